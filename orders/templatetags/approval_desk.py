"""The admin index's approval desk: how many orders wait, the most urgent, today's by status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import template
from django.utils import timezone

from orders import selectors

register = template.Library()


@register.inclusion_tag("admin/orders/_approval_desk.html", takes_context=True)
def approval_desk(context: dict[str, Any]) -> dict[str, Any]:
    """Shown to whoever may see orders; the index's app list stays as Django draws it."""
    user = context["request"].user
    if not (user.has_perm("orders.view_order") or user.has_perm("orders.change_order")):
        return {"desk": None}
    today = timezone.localdate()
    return {
        "desk": selectors.approval_desk(),
        # The changelist's date drill-down (date_hierarchy) for today.
        "today_query": f"created_at__day={today.day}&created_at__month={today.month}"
        f"&created_at__year={today.year}",
    }


@register.filter
def since_start(value: timedelta) -> str:
    """An engine event's offset from the workflow's start: "+0.012 s", "+3 min 20.500 s"."""
    seconds = max(value.total_seconds(), 0.0)
    minutes, seconds = divmod(seconds, 60)
    if minutes:
        return f"+{int(minutes)} min {seconds:06.3f} s"
    return f"+{seconds:.3f} s"
