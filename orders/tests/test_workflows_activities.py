"""Activities run at least once: running each one again (twice more) must change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orders.models import LedgerEntry, Order, OrderStatus
from orders.services.orders import order_place
from orders.tests.conftest import stock, timeline
from orders.workflows import activities

# Activities close stale connections like a request does, which an enclosing test transaction
# would not survive: these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


def snapshot(order: Order, item) -> tuple:
    order.refresh_from_db()
    return (
        stock(item),
        list(LedgerEntry.objects.filter(order=order).values_list("step", "quantity", "amount")),
        timeline(order),
        order.status,
        order.approval_deadline,
    )


def run_three_times(fn, payload, order, item) -> tuple:
    fn(None, payload)
    after_first = snapshot(order, item)
    fn(None, payload)
    fn(None, payload)
    assert snapshot(order, item) == after_first
    return after_first


@pytest.fixture
def order(cars):
    return order_place(item_id=cars.pk, quantity=2)


def test_notify_activity_rerun_changes_nothing(order, cars):
    note = {
        "order_id": order.id,
        "step": "received",
        "message": f"Received order {order.id} for 2 cars at $10000 !",
        "status": "processing",
    }
    state = run_three_times(activities.notify_activity, note, order, cars)
    assert state[2] == [note["message"]]
    assert state[3] == OrderStatus.PROCESSING


def test_verify_inventory_activity_rerun_reserves_once(order, cars):
    activities.verify_inventory_activity(None, {"order_id": order.id})
    result = activities.verify_inventory_activity(None, {"order_id": order.id})
    assert result == {"success": True, "available": 10}
    state = run_three_times(
        activities.verify_inventory_activity, {"order_id": order.id}, order, cars
    )
    assert state[0] == (8, 2, 0)


def test_request_approval_activity_rerun_changes_nothing(order, cars):
    deadline = (datetime.now(UTC) + timedelta(seconds=200)).replace(tzinfo=None).isoformat()
    payload = {"order_id": order.id, "deadline": deadline}
    state = run_three_times(activities.request_approval_activity, payload, order, cars)
    assert state[3] == OrderStatus.AWAITING_APPROVAL
    assert state[2] == ["Requesting approval for payment of 10000 USD for 2 cars"]


def test_payment_and_update_activities_rerun_change_nothing(order, cars):
    activities.verify_inventory_activity(None, {"order_id": order.id})
    run_three_times(activities.process_payment_activity, {"order_id": order.id}, order, cars)
    state = run_three_times(
        activities.update_inventory_activity, {"order_id": order.id}, order, cars
    )
    assert state[0] == (8, 0, 2)
    assert [step for step, _, _ in state[1]] == ["reserve", "payment", "deduct"]


def test_release_and_refund_activities_rerun_change_nothing(order, cars):
    activities.verify_inventory_activity(None, {"order_id": order.id})
    activities.process_payment_activity(None, {"order_id": order.id})
    run_three_times(activities.refund_payment_activity, {"order_id": order.id}, order, cars)
    state = run_three_times(
        activities.release_inventory_activity, {"order_id": order.id}, order, cars
    )
    assert state[0] == (10, 0, 0)
    assert [step for step, _, _ in state[1]] == ["reserve", "payment", "refund", "release"]


def test_activity_log_lines_keep_the_quickstart_wording(order, cars, caplog):
    caplog.set_level("INFO")
    activities.verify_inventory_activity(None, {"order_id": order.id})
    activities.process_payment_activity(None, {"order_id": order.id})
    activities.update_inventory_activity(None, {"order_id": order.id})
    lines = [(r.name, r.getMessage()) for r in caplog.records]
    assert ("VerifyInventoryActivity", "There are 10 Cars available for purchase") in lines
    assert ("UpdateInventoryActivity", "There are now 8 cars left in stock") in lines
    assert (
        "ProcessPaymentActivity",
        f"Payment for request ID {order.id} processed successfully",
    ) in lines
