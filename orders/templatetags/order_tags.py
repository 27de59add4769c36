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


@register.filter
def elapsed(value: timedelta | None) -> str:
    """How long a step took, to the precision that matters: "35 ms", "4.2 s", "3 min 05 s"."""
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return duration(value)


STEP_STATES = {
    "done": "done",
    "current": "in progress",
    "pending": "to come",
    "stopped": "the order stopped here",
}


@register.filter
def step_state(state: str) -> str:
    """A step's state in words, for those who do not see its marker."""
    return STEP_STATES.get(state, state)


@register.filter(name="money")
def money_filter(value: object) -> str:
    """{{ order.total_cost|money }} -> "$15,000.00", the one format for money on every page."""
    return money(str(value))
