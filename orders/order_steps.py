"""The order's workflow as the steps a customer follows: received, stock reserved, the manager's
approval (for large orders), paid, inventory updated, completed; or where it stopped and why.

Pure functions over rows the app already writes, no queries here (``selectors.order_progress``
loads them). Each step ends when its record was written: the workflow's notifications
(``OrderEvent``) and the ledger rows (``LedgerEntry``), each written once per (order, step) by
an idempotent activity. The workflow runs its steps one after another, so a step starts when
the one before it ended, and the first when the order was placed: the durations add up to the
order's whole time, and a long one shows where it waited (for the engine, for a manager).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from django.utils.text import Truncator

from orders.models import LedgerEntry, Order, OrderEvent, money

State = Literal["done", "current", "pending", "stopped"]

# The order's records that end each step (workflow notification steps and ledger steps).
RECEIVED, INSUFFICIENT, APPROVAL_REQUESTED = "received", "insufficient", "approval_requested"
APPROVED, REJECTED, TIMED_OUT = "approved", "rejected", "timed_out"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    state: State
    started_at: datetime | None = None
    ended_at: datetime | None = None
    note: str = ""

    @property
    def duration(self) -> timedelta | None:
        """How long the step took; None while it runs or before it starts. Two records written
        in one transaction can carry clock readings a tick apart, hence never below zero."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max(self.ended_at - self.started_at, timedelta(0))


@dataclass
class _Walk:
    """The steps so far and when the next one started."""

    order: Order
    events: Mapping[str, OrderEvent]
    ledger: Mapping[str, LedgerEntry]
    started_at: datetime
    steps: list[Step] = field(default_factory=list)
    stopped: bool = False

    def done(self, key: str, label: str, ended_at: datetime, note: str = "") -> None:
        self.steps.append(Step(key, label, "done", self.started_at, ended_at, note))
        self.started_at = max(self.started_at, ended_at)

    def stop(self, key: str, label: str, ended_at: datetime, note: str) -> None:
        self.steps.append(Step(key, label, "stopped", self.started_at, ended_at, note))
        self.stopped = True

    def reach(self, key: str, current_label: str, failed_label: str) -> None:
        """A step without its record: the order is on it, or stopped on it (final)."""
        if self.order.is_final:
            self._stopped_unannounced(key, failed_label)
        else:
            self.steps.append(Step(key, current_label, "current", self.started_at))
            self.stopped = True

    def _stopped_unannounced(self, key: str, label: str) -> None:
        """The order closed while on this step: failed, or cancelled (by the customer or staff)."""
        failed, cancelled = self.events.get(FAILED), self.events.get(CANCELLED)
        undone = _undone(self)
        if failed is not None:
            # The error as the failed activity raised it, cut to what a page can show.
            why = Truncator(failed.detail).chars(300) or "the workflow stopped"
            self.stop(key, label, failed.created_at, _sentence(why, undone))
        elif cancelled is not None:
            why = cancelled.detail or cancelled.message
            self.stop(key, "Cancelled", cancelled.created_at, _sentence(why, undone))
        else:  # closed without a record of why (an older order)
            self.stop(key, self.order.get_status_display(), self.order.updated_at, "")


def order_steps(
    *,
    order: Order,
    events: Mapping[str, OrderEvent],
    ledger: Mapping[str, LedgerEntry],
    needs_approval: bool,
) -> list[Step]:
    """The steps of ``order`` from its notifications and ledger rows, keyed by step.

    ``needs_approval`` (its total is over the threshold) lists the approval among the steps to
    come before the workflow has asked for it.
    """
    walk = _Walk(order=order, events=events, ledger=ledger, started_at=order.created_at)
    if RECEIVED in events:
        walk.done(RECEIVED, "Received", events[RECEIVED].created_at)
    else:
        walk.reach(RECEIVED, "Waiting for the workflow to pick the order up", "Failed")
    if not walk.stopped:
        _reserve(walk)
    # The threshold may have changed since a finished order ran: only its record says whether
    # it asked for approval.
    if not walk.stopped and (
        APPROVAL_REQUESTED in events or (needs_approval and not order.is_final)
    ):
        _approval(walk)
    for key, label, current, failed in (
        ("payment", "Paid", "Taking the payment", "Payment failed"),
        ("deduct", "Inventory updated", "Updating the inventory", "Inventory update failed"),
    ):
        if walk.stopped:
            break
        record = ledger.get(key)
        if record is not None:
            note = money(record.amount) if key == "payment" else f"{record.quantity} sold"
            walk.done(key, label, record.created_at, note)
        else:
            walk.reach(key, current, failed)
    if not walk.stopped:
        if COMPLETED in events:
            walk.done(COMPLETED, "Completed", events[COMPLETED].created_at)
        else:
            walk.reach(COMPLETED, "Completing", "Failed")
    return walk.steps + _pending(walk, needs_approval)


def _reserve(walk: _Walk) -> None:
    reserved, short = walk.ledger.get("reserve"), walk.events.get(INSUFFICIENT)
    if reserved is not None:
        walk.done("reserve", "Stock reserved", reserved.created_at, f"{reserved.quantity} held")
    elif short is not None:
        walk.stop("reserve", "Not enough stock", short.created_at, short.message)
    else:
        walk.reach("reserve", "Reserving stock", "Reservation failed")


def _approval(walk: _Walk) -> None:
    order, events = walk.order, walk.events
    decided_by = order.decided_by.get_username() if order.decided_by else "a manager"
    undone = _undone(walk)
    if APPROVED in events:
        walk.done("approval", "Approved", events[APPROVED].created_at, f"by {decided_by}")
    elif REJECTED in events:
        note = _sentence(f"Rejected by {decided_by}", undone)
        walk.stop("approval", "Rejected", events[REJECTED].created_at, note)
    elif TIMED_OUT in events:
        note = _sentence("No manager decided before the approval window closed", undone)
        walk.stop("approval", "Timed out", events[TIMED_OUT].created_at, note)
    else:
        walk.reach("approval", "Awaiting a manager's approval", "Not approved")


def _pending(walk: _Walk, needs_approval: bool) -> list[Step]:
    """The steps still to come, for an order in flight."""
    if walk.order.is_final:
        return []
    seen = {step.key for step in walk.steps}
    upcoming = [
        ("reserve", "Stock reserved"),
        ("approval", "Manager's approval"),
        ("payment", "Paid"),
        ("deduct", "Inventory updated"),
        (COMPLETED, "Completed"),
    ]
    return [
        Step(key, label, "pending")
        for key, label in upcoming
        if key not in seen
        and (key != "approval" or needs_approval or APPROVAL_REQUESTED in walk.events)
    ]


def _undone(walk: _Walk) -> list[str]:
    """What the failure path gave back, as the ledger records it."""
    ledger, undone = walk.ledger, []
    if "refund" in ledger:
        undone.append(f"payment of {money(ledger['refund'].amount)} refunded")
    if "release" in ledger:
        undone.append(f"{ledger['release'].quantity} {walk.order.item.name} returned to stock")
    return undone


def _sentence(why: str, undone: list[str]) -> str:
    """ "card declined", ["3 Cars returned to stock"] -> "Card declined. 3 Cars returned to stock."."""
    why = why.rstrip(".!")
    why = f"{why[:1].upper()}{why[1:]}"
    if not undone:
        return f"{why}."
    then = "; ".join(undone)
    return f"{why}. {then[0].upper()}{then[1:]}."
