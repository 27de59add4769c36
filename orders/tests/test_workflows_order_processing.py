"""Every path of order_processing_workflow, on the real embedded sidecar and the real SDK runtime."""

from __future__ import annotations

import threading
from decimal import Decimal

import grpc
import pytest
from dapr.ext.workflow import DaprWorkflowClient
from django.contrib.auth.models import User
from django.db import connection, transaction

from orders import workflow_client
from orders.exceptions import InventoryUpdateFailed, PaymentFailed
from orders.models import InventoryItem, LedgerEntry, Order, OrderStatus
from orders.services.approvals import order_approve, order_reject
from orders.services.orders import order_cancel, order_place, order_schedule
from orders.tests.conftest import stock, timeline, wait_until
from orders.workflows import activities
from orders.workflows.order_processing import (
    APPROVAL_EVENT,
    CANCELLED,
    COMPLETED,
    FAILED,
    INSUFFICIENT_STOCK,
    PROCESSING,
    REJECTED,
)


def ledger(order) -> list[str]:
    return list(LedgerEntry.objects.filter(order=order).values_list("step", flat=True))


@pytest.fixture
def shop(workflow_engine):
    cars = InventoryItem.objects.create(name="Cars", unit_cost=Decimal("5000"), on_hand=20)
    clips = InventoryItem.objects.create(name="Paperclip", unit_cost=Decimal("5"), on_hand=100)
    manager = User.objects.create_superuser("boss", password="pw-boss-123")
    return cars, clips, manager


def test_workflow_statuses_are_order_statuses():
    for status in (PROCESSING, COMPLETED, INSUFFICIENT_STOCK, REJECTED, CANCELLED, FAILED):
        assert status in OrderStatus.values


def test_small_order_completes(workflow_engine, shop):
    cars, _, _ = shop
    order = order_place(item_id=cars.pk, quantity=1)
    order = workflow_engine.wait_for_completion(order.id)
    assert order.status == OrderStatus.COMPLETED
    assert order.result == {"processed": True}
    assert stock(cars) == (19, 0, 1)
    assert timeline(order) == [
        f"Received order {order.id} for 1 cars at $5000 !",
        f"Order {order.id} has completed!",
    ]
    assert ledger(order) == ["reserve", "payment", "deduct"]


def test_insufficient_stock_ends_unprocessed(workflow_engine, shop):
    _, clips, _ = shop
    # Stock sold elsewhere between placing and the workflow's check: the order is scheduled
    # when the transaction that placed it commits, so the workflow runs after the sale.
    with transaction.atomic():
        order = order_place(item_id=clips.pk, quantity=60)
        InventoryItem.objects.filter(pk=clips.pk).update(on_hand=50)
    order = workflow_engine.wait_for_completion(order.id)
    assert order.status == OrderStatus.INSUFFICIENT_STOCK
    assert order.result == {"processed": False}
    assert stock(clips) == (50, 0, 0)
    assert timeline(order) == [
        f"Received order {order.id} for 60 paperclip at $300 !",
        "Insufficient inventory for Paperclip!",
    ]
    assert ledger(order) == []


def _await_approval(order_id):
    wait_until(lambda: Order.objects.get(pk=order_id).status == OrderStatus.AWAITING_APPROVAL)


def test_large_order_approved_completes(workflow_engine, shop):
    cars, _, manager = shop
    order = order_place(item_id=cars.pk, quantity=11)  # $55,000 > $50,000
    _await_approval(order.id)
    assert stock(cars) == (9, 11, 0)  # held while the manager decides
    order_approve(order_id=order.id, user=manager)
    order = workflow_engine.wait_for_completion(order.id)
    assert order.status == OrderStatus.COMPLETED
    assert order.approved is True and order.decided_by == manager
    assert stock(cars) == (9, 0, 11)
    assert timeline(order) == [
        f"Received order {order.id} for 11 cars at $55000 !",
        "Requesting approval for payment of 55000 USD for 11 cars",
        f"Payment for order {order.id} has been approved!",
        f"Order {order.id} has completed!",
    ]


class TestApprovalOnlyThroughTheApp:
    """The manager_approval event is a wake-up; only a decision recorded by the app decides."""

    def test_event_raised_at_the_engine_with_the_token_approves_nothing(
        self, workflow_engine, shop, caplog
    ):
        cars, _, manager = shop
        order = order_place(item_id=cars.pk, quantity=11)
        _await_approval(order.id)

        workflow_client.client().raise_workflow_event(
            order.id, APPROVAL_EVENT, data={"approval": True}
        )
        wait_until(lambda: f"Ignored a manager_approval event for order {order.id}" in caplog.text)

        order.refresh_from_db()
        assert order.status == OrderStatus.AWAITING_APPROVAL
        assert order.approved is None and order.decided_by is None
        assert stock(cars) == (9, 11, 0)
        assert ledger(order) == ["reserve"]

        # The app's own path still works afterwards, and records who decided.
        order_approve(order_id=order.id, user=manager)
        order = workflow_engine.wait_for_completion(order.id)
        assert order.status == OrderStatus.COMPLETED
        assert order.decided_by == manager and order.decided_at is not None
        assert stock(cars) == (9, 0, 11)

    def test_event_raised_at_the_engine_without_the_token_is_refused(
        self, workflow_engine, shop, monkeypatch
    ):
        cars, _, _ = shop
        order = order_place(item_id=cars.pk, quantity=11)
        _await_approval(order.id)
        host, _, port = workflow_engine.address.rpartition(":")
        monkeypatch.delenv("DAPR_API_TOKEN", raising=False)  # a client built without ours
        stranger = DaprWorkflowClient(host=host, port=port)

        with pytest.raises(grpc.RpcError) as refused:
            stranger.raise_workflow_event(order.id, APPROVAL_EVENT, data={"approval": True})

        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        order.refresh_from_db()
        assert order.status == OrderStatus.AWAITING_APPROVAL and order.approved is None


def test_large_order_rejected_releases_stock(workflow_engine, shop):
    cars, _, manager = shop
    order = order_place(item_id=cars.pk, quantity=12)
    _await_approval(order.id)
    order_reject(order_id=order.id, user=manager)
    order = workflow_engine.wait_for_completion(order.id)
    assert order.status == OrderStatus.REJECTED
    assert order.approved is False
    assert stock(cars) == (20, 0, 0)
    assert timeline(order)[-1] == f"Payment for order {order.id} has been rejected!"
    assert ledger(order) == ["reserve", "release"]


def test_approval_timeout_cancels_and_releases(workflow_engine, shop, settings):
    settings.ORDER_APPROVAL_TIMEOUT = 1
    cars, _, _ = shop
    order = order_place(item_id=cars.pk, quantity=15)
    order = workflow_engine.wait_for_completion(order.id)
    assert order.status == OrderStatus.CANCELLED
    assert order.approved is None
    assert stock(cars) == (20, 0, 0)
    assert timeline(order)[-1] == (
        f"Payment for order {order.id} has been cancelled due to timeout!"
    )
    assert ledger(order) == ["reserve", "release"]


def test_update_failure_after_payment_refunds(workflow_engine, shop, monkeypatch):
    cars, _, _ = shop

    def broken_deduct(*, order_id):
        raise InventoryUpdateFailed("warehouse system down")

    monkeypatch.setattr(activities, "inventory_deduct", broken_deduct)
    order = order_place(item_id=cars.pk, quantity=2)
    order = workflow_engine.wait_for_completion(order.id)
    assert order.status == OrderStatus.FAILED
    assert order.result == {"processed": False}
    assert stock(cars) == (20, 0, 0)
    assert ledger(order) == ["reserve", "payment", "refund", "release"]
    assert timeline(order)[-1] == f"Order {order.id} Failed!"
    assert order.events.get(step="failed").detail == "warehouse system down"


def test_payment_failure_releases_without_refund(workflow_engine, shop, monkeypatch):
    cars, _, _ = shop

    def declined(*, order_id):
        raise PaymentFailed("card declined")

    monkeypatch.setattr(activities, "payment_process", declined)
    order = order_place(item_id=cars.pk, quantity=2)
    order = workflow_engine.wait_for_completion(order.id)
    assert order.status == OrderStatus.FAILED
    assert stock(cars) == (20, 0, 0)
    assert ledger(order) == ["reserve", "release"]
    assert timeline(order)[-1] == f"Order {order.id} Failed!"
    # Why, for the order page: the failed activity's error, as the workflow received it.
    assert order.events.get(step="failed").detail == "card declined"


def test_cancel_while_awaiting_approval(workflow_engine, shop):
    cars, _, manager = shop
    order = order_place(item_id=cars.pk, quantity=11)
    _await_approval(order.id)
    order_cancel(order_id=order.id, user=manager)
    state = workflow_engine.wait_for_completion(order.id)
    assert state.status == OrderStatus.CANCELLED
    assert stock(cars) == (20, 0, 0)
    assert timeline(state)[-1] == f"Order {order.id} has been cancelled by boss."


def test_concurrent_orders_for_last_units_never_oversell(workflow_engine, shop):
    """Six one-unit orders, all placed while three units were free, run at once."""
    _, clips, _ = shop
    InventoryItem.objects.filter(pk=clips.pk).update(on_hand=3)
    orders = [
        Order.objects.create(item=clips, quantity=1, total_cost=Decimal("5")) for _ in range(6)
    ]
    barrier = threading.Barrier(len(orders))

    def schedule(order_id: str) -> None:
        try:
            barrier.wait()
            order_schedule(order_id=order_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=schedule, args=(o.id,)) for o in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finals = [workflow_engine.wait_for_completion(o.id).status for o in orders]
    assert finals.count(OrderStatus.COMPLETED) == 3
    assert finals.count(OrderStatus.INSUFFICIENT_STOCK) == 3
    assert stock(clips) == (0, 0, 3)
