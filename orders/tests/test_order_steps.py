"""The order page's steps, derived from the rows the workflow's activities write (no database:
the rows are built in memory with the times they would carry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from orders.models import InventoryItem, LedgerEntry, Order, OrderEvent, OrderStatus
from orders.order_steps import order_steps
from orders.templatetags.order_tags import elapsed

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


class Rows:
    """An order of 3 Cars at $5,000 and the records its workflow has written so far."""

    def __init__(self, status: str = OrderStatus.PROCESSING, decided_by: str | None = None):
        self.order = Order(
            id="o1",
            item=InventoryItem(name="Cars", unit_cost=Decimal(5000)),
            quantity=3,
            total_cost=Decimal(15000),
            status=status,
            created_at=T0,
            updated_at=T0,
        )
        if decided_by:
            self.order.decided_by = User(username=decided_by)
        self.events: dict[str, OrderEvent] = {}
        self.ledger: dict[str, LedgerEntry] = {}

    def event(self, step: str, ms: int, message: str = "", detail: str = "") -> Rows:
        self.events[step] = OrderEvent(step=step, message=message, detail=detail, created_at=at(ms))
        return self

    def entry(self, step: str, ms: int, amount: str = "0") -> Rows:
        self.ledger[step] = LedgerEntry(
            step=step, quantity=3, amount=Decimal(amount), created_at=at(ms)
        )
        return self

    def steps(self, needs_approval: bool = False) -> list[tuple[str, str, str, int | None]]:
        """(label, state, note, duration in ms) of each step."""
        return [
            (
                step.label,
                step.state,
                step.note,
                None if step.duration is None else step.duration // timedelta(milliseconds=1),
            )
            for step in order_steps(
                order=self.order,
                events=self.events,
                ledger=self.ledger,
                needs_approval=needs_approval,
            )
        ]


def paid(rows: Rows, start: int = 0) -> Rows:
    return rows.entry("payment", start + 10, "15000").entry("deduct", start + 20)


class TestOrderInFlight:
    def test_an_order_not_picked_up_yet_waits_and_lists_what_comes(self):
        assert Rows(OrderStatus.PLACED).steps() == [
            ("Waiting for the workflow to pick the order up", "current", "", None),
            ("Stock reserved", "pending", "", None),
            ("Paid", "pending", "", None),
            ("Inventory updated", "pending", "", None),
            ("Completed", "pending", "", None),
        ]

    def test_a_large_order_lists_the_approval_before_the_workflow_asks(self):
        rows = Rows().event("received", 40)
        assert [label for label, *_ in rows.steps(needs_approval=True)] == [
            "Received",
            "Reserving stock",
            "Manager's approval",
            "Paid",
            "Inventory updated",
            "Completed",
        ]

    def test_awaiting_approval_is_the_current_step(self):
        rows = Rows(OrderStatus.AWAITING_APPROVAL).event("received", 40).entry("reserve", 55)
        rows.event("approval_requested", 60)
        assert rows.steps(needs_approval=True)[1:4] == [
            ("Stock reserved", "done", "3 held", 15),
            ("Awaiting a manager's approval", "current", "", None),
            ("Paid", "pending", "", None),
        ]


class TestFinishedOrders:
    def test_small_order_each_step_starts_when_the_one_before_ended(self):
        rows = Rows(OrderStatus.COMPLETED).event("received", 40).entry("reserve", 55)
        paid(rows, 55).event("completed", 90)
        assert rows.steps() == [
            ("Received", "done", "", 40),
            ("Stock reserved", "done", "3 held", 15),
            ("Paid", "done", "$15,000.00", 10),
            ("Inventory updated", "done", "3 sold", 10),
            ("Completed", "done", "", 15),
        ]

    def test_approved_order_shows_who_approved_and_how_long_it_waited(self):
        rows = Rows(OrderStatus.COMPLETED, decided_by="boss").event("received", 40)
        rows.entry("reserve", 50).event("approval_requested", 60).event("approved", 95_050)
        paid(rows, 95_050).event("completed", 95_100)
        assert rows.steps(needs_approval=True)[2] == ("Approved", "done", "by boss", 95_000)
        assert [label for label, *_ in rows.steps()][3:] == [
            "Paid",
            "Inventory updated",
            "Completed",
        ]

    def test_rejected_order_stops_there_and_says_what_was_given_back(self):
        rows = Rows(OrderStatus.REJECTED, decided_by="boss").event("received", 40)
        rows.entry("reserve", 50).event("approval_requested", 60)
        rows.entry("release", 4_040).event("rejected", 4_050)
        assert rows.steps(needs_approval=True)[2:] == [
            ("Rejected", "stopped", "Rejected by boss. 3 Cars returned to stock.", 4_000),
        ]

    def test_timed_out_order(self):
        rows = Rows(OrderStatus.CANCELLED).event("received", 40).entry("reserve", 50)
        rows.event("approval_requested", 60).entry("release", 200_040).event("timed_out", 200_050)
        assert rows.steps()[2:] == [
            (
                "Timed out",
                "stopped",
                "No manager decided before the approval window closed. 3 Cars returned to stock.",
                200_000,
            ),
        ]

    def test_not_enough_stock(self):
        rows = Rows(OrderStatus.INSUFFICIENT_STOCK).event("received", 40)
        rows.event("insufficient", 70, "Insufficient inventory for Cars!")
        assert rows.steps(needs_approval=True) == [
            ("Received", "done", "", 40),
            ("Not enough stock", "stopped", "Insufficient inventory for Cars!", 30),
        ]

    def test_failed_payment_shows_the_error(self):
        rows = Rows(OrderStatus.FAILED).event("received", 40).entry("reserve", 50)
        rows.entry("release", 80).event("failed", 90, "Order o1 Failed!", detail="card declined")
        assert rows.steps()[2:] == [
            ("Payment failed", "stopped", "Card declined. 3 Cars returned to stock.", 40),
        ]

    def test_failed_inventory_update_after_payment_refunds(self):
        rows = Rows(OrderStatus.FAILED).event("received", 40).entry("reserve", 50)
        rows.entry("payment", 60, "15000").entry("refund", 80, "15000").entry("release", 81)
        rows.event("failed", 90, detail="warehouse system down")
        assert rows.steps()[3:] == [
            (
                "Inventory update failed",
                "stopped",
                "Warehouse system down. Payment of $15,000.00 refunded; 3 Cars returned to stock.",
                30,
            ),
        ]

    def test_cancelled_by_its_customer_while_awaiting_approval(self):
        rows = Rows(OrderStatus.CANCELLED).event("received", 40).entry("reserve", 50)
        rows.event("approval_requested", 60).entry("release", 9_000)
        rows.event(
            "cancelled", 9_000, "Order o1 has been cancelled by alice.", "Cancelled by alice"
        )
        assert rows.steps()[2:] == [
            ("Cancelled", "stopped", "Cancelled by alice. 3 Cars returned to stock.", 8_950),
        ]

    def test_a_finished_order_lists_an_approval_only_if_it_asked_for_one(self):
        """The threshold may have been lowered since: a finished order's records decide."""
        rows = Rows(OrderStatus.COMPLETED).event("received", 40).entry("reserve", 50)
        paid(rows, 50).event("completed", 80)
        assert "Manager's approval" not in [label for label, *_ in rows.steps(needs_approval=True)]

    def test_records_a_clock_tick_apart_never_take_negative_time(self):
        rows = Rows(OrderStatus.COMPLETED).event("received", 40).entry("reserve", 39)
        paid(rows, 39).event("completed", 70)
        assert [took for *_, took in rows.steps()] == [40, 0, 9, 10, 11]


@pytest.mark.parametrize(
    ("took", "text"),
    [
        (timedelta(milliseconds=7), "7 ms"),
        (timedelta(milliseconds=999), "999 ms"),
        (timedelta(seconds=1.04), "1.0 s"),
        (timedelta(seconds=42.36), "42.4 s"),
        (timedelta(seconds=125), "2 min 05 s"),
    ],
)
def test_elapsed_reads_to_the_precision_that_matters(took, text):
    assert elapsed(took) == text
