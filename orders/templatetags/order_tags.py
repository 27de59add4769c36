from __future__ import annotations

from datetime import timedelta

from django import template

from orders.models import money

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """A countdown a person reads: "3 min 05 s", "42 s"."""
    if value is None:
        return ""
    seconds = max(int(value.total_seconds()), 0)
    minutes, seconds = divmod(seconds, 60)
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


@register.filter(name="money")
def money_filter(value: object) -> str:
    """{{ order.total_cost|money }} -> "$15,000.00", the one format for money on every page."""
    return money(str(value))
