"""Orders: placing one (and scheduling its workflow), its timeline, cancelling one."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders import workflow_client
from orders.exceptions import (
    ApprovalNotPermitted,
    EngineUnavailable,
    InvalidFormToken,
    InvalidQuantity,
    InventoryUpdateFailed,
    NotEnoughStock,
    OrderNotCancellable,
    PaymentFailed,
    UnknownItem,
)
from orders.models import InventoryItem, LedgerEntry, Order, OrderStatus
from orders.services.inventory import inventory_deduct, inventory_reserve
from orders.services.orders import (
    order_cancel,
    order_fail_stuck,
    order_notify,
    order_place,
    order_request_approval,
    order_schedule,
)
from orders.services.payments import payment_process
from orders.tests.conftest import paid_order, stock, timeline


class TestOrderPlace:
    def test_order_place_writes_order_with_total(self, cars):
        order = order_place(item_id=cars.pk, quantity=3)
        order.refresh_from_db()
        assert order.total_cost == Decimal("15000")
        assert order.status == OrderStatus.PLACED
        assert order.scheduled_at is None
        assert len(order.id) == 32

    def test_order_place_records_who_placed_it(self, cars, alice):
        order = order_place(item_id=cars.pk, quantity=1, placed_by=alice)
        order.refresh_from_db()
        assert order.placed_by == alice
        assert list(alice.orders.all()) == [order]

    @pytest.mark.parametrize("quantity", [0, -1, "2", 2.5, True, None])
    def test_order_place_bad_quantity_writes_nothing(self, cars, quantity):
        with pytest.raises(InvalidQuantity):
            order_place(item_id=cars.pk, quantity=quantity)
        assert Order.objects.count() == 0

    def test_order_place_unknown_item_writes_nothing(self, cars):
        with pytest.raises(UnknownItem):
            order_place(item_id=cars.pk + 99, quantity=1)
        assert Order.objects.count() == 0

    def test_order_place_more_than_on_hand_writes_nothing(self, cars):
        with pytest.raises(NotEnoughStock):
            order_place(item_id=cars.pk, quantity=11)
        assert Order.objects.count() == 0

    def test_order_place_total_beyond_what_an_order_holds_writes_nothing(self, db):
        # A huge total must be refused before the row is written: a row whose total does not
        # fit total_cost would break every page that lists it.
        jets = InventoryItem.objects.create(
            name="Jets", unit_cost=Decimal("9999999999.99"), on_hand=1000
        )
        with pytest.raises(InvalidQuantity, match="must not exceed"):
            order_place(item_id=jets.pk, quantity=101)
        assert Order.objects.count() == 0
        assert order_place(item_id=jets.pk, quantity=99).total_cost == Decimal("989999999999.01")

    def test_the_same_form_twice_places_one_order(self, cars):
        token = "ab" * 16
        first = order_place(item_id=cars.pk, quantity=2, form_token=token)
        again = order_place(item_id=cars.pk, quantity=2, form_token=token)
        assert again.pk == first.pk
        assert Order.objects.count() == 1
        # The same form sent with other figures (Back, change, send) is another order.
        other = order_place(item_id=cars.pk, quantity=3, form_token=token)
        assert other.pk != first.pk and other.quantity == 3
        assert Order.objects.count() == 2

    def test_the_same_form_sent_twice_at_once_places_one_order(self, cars, monkeypatch):
        token = "cd" * 16
        get_item = InventoryItem.objects.get
        other_request: list[Order] = []

        def the_other_request_places_it_meanwhile(**lookup):
            monkeypatch.setattr(InventoryItem.objects, "get", get_item)  # once
            # Between this request's lookup of the order and its insert:
            other_request.append(order_place(item_id=cars.pk, quantity=2, form_token=token))
            return get_item(**lookup)

        monkeypatch.setattr(InventoryItem.objects, "get", the_other_request_places_it_meanwhile)
        order = order_place(item_id=cars.pk, quantity=2, form_token=token)
        assert order.pk == other_request[0].pk
        assert Order.objects.count() == 1

    @pytest.mark.parametrize("token", ["", "AB" * 16, "ab" * 17, "<script>"])
    def test_a_malformed_form_token_writes_nothing(self, cars, token):
        with pytest.raises(InvalidFormToken):
            order_place(item_id=cars.pk, quantity=1, form_token=token)
        assert Order.objects.count() == 0

    def test_order_place_schedules_after_commit(
        self, cars, no_engine, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            order = order_place(item_id=cars.pk, quantity=1)
        assert no_engine == [("schedule", order.id)]
        order.refresh_from_db()
        assert order.scheduled_at is not None

    def test_order_schedule_engine_down_leaves_order_for_the_worker(self, cars, monkeypatch):
        def down(**kwargs):
            raise EngineUnavailable("no engine")

        monkeypatch.setattr(workflow_client, "workflow_schedule", down)
        order = order_place(item_id=cars.pk, quantity=1)
        assert order_schedule(order_id=order.id) is False
        order.refresh_from_db()
        assert order.scheduled_at is None
        assert order.status == OrderStatus.PLACED


class TestNotify:
    def test_notify_once_per_step_and_final_state_sticks(self, cars):
        order = order_place(item_id=cars.pk, quantity=1)
        order_notify(order_id=order.id, step="received", message="Received", status="processing")
        order_notify(order_id=order.id, step="received", message="Received", status="processing")
        order_notify(
            order_id=order.id,
            step="completed",
            message="Done",
            status="completed",
            result={"processed": True},
        )
        # A late replay must not reopen a finished order.
        order_notify(order_id=order.id, step="received2", message="Again", status="processing")
        order.refresh_from_db()
        assert order.status == OrderStatus.COMPLETED
        assert order.result == {"processed": True}
        assert timeline(order) == ["Received", "Done"]


class TestCancel:
    def test_cancel_terminates_releases_and_refunds(self, cars, manager, no_engine):
        order = paid_order(cars)
        order_cancel(order_id=order.id, user=manager)
        order.refresh_from_db()
        assert ("terminate", order.id) in no_engine
        assert order.status == OrderStatus.CANCELLED
        assert stock(cars) == (10, 0, 0)
        assert LedgerEntry.objects.filter(order=order, step="refund").exists()
        assert timeline(order) == [f"Order {order.id} has been cancelled by boss."]
        with pytest.raises(OrderNotCancellable):
            order_cancel(order_id=order.id, user=manager)

    def test_cancel_after_fulfilment_refused(self, cars, manager, no_engine):
        order = order_place(item_id=cars.pk, quantity=4)
        inventory_reserve(order_id=order.id)
        inventory_deduct(order_id=order.id)
        with pytest.raises(OrderNotCancellable):
            order_cancel(order_id=order.id, user=manager)
        assert no_engine == []
        assert stock(cars) == (6, 0, 4)

    def test_cancel_while_the_goods_are_being_sold_leaves_no_order_half_done(
        self, cars, manager, monkeypatch
    ):
        # The workflow's last inventory step runs while the manager cancels and commits after
        # the cancel: it ships nothing (the other order of the two is "already fulfilled",
        # test_cancel_after_fulfilment_refused).
        order = paid_order(cars)
        late_step: list[Exception] = []

        def terminate_while_the_step_runs(instance_id):
            try:
                inventory_deduct(order_id=instance_id)
            except InventoryUpdateFailed as error:
                late_step.append(error)

        monkeypatch.setattr(workflow_client, "workflow_terminate", terminate_while_the_step_runs)
        order_cancel(order_id=order.id, user=manager)
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert len(late_step) == 1
        assert stock(cars) == (10, 0, 0)
        assert sorted(LedgerEntry.objects.filter(order=order).values_list("step", flat=True)) == [
            "payment",
            "refund",
            "release",
            "reserve",
        ]

    def test_cancel_with_the_engine_away_still_cancels(self, cars, manager, monkeypatch):
        order = order_place(item_id=cars.pk, quantity=4)
        inventory_reserve(order_id=order.id)

        def engine_away(instance_id):
            raise EngineUnavailable("The workflow engine is not reachable.")

        monkeypatch.setattr(workflow_client, "workflow_terminate", engine_away)
        order_cancel(order_id=order.id, user=manager)
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert stock(cars) == (10, 0, 0)
        # The workflow, if it runs on, takes nothing: each of its steps finds the order closed
        # (a replayed reservation reports what it did before the cancel, and moves no stock).
        inventory_reserve(order_id=order.id)
        with pytest.raises(PaymentFailed):
            payment_process(order_id=order.id)
        with pytest.raises(InventoryUpdateFailed):
            inventory_deduct(order_id=order.id)
        assert stock(cars) == (10, 0, 0)

    def test_a_workflow_that_ended_after_the_goods_shipped_closes_its_order_completed(self, cars):
        order = paid_order(cars, shipped=True)
        assert order_fail_stuck(order_id=order.id, reason="workflow terminated")
        order.refresh_from_db()
        assert order.status == OrderStatus.COMPLETED
        assert not LedgerEntry.objects.filter(order=order, step="refund").exists()
        assert stock(cars) == (6, 0, 4)
        assert timeline(order) == [f"Order {order.id} has completed!"]

    def test_reserve_after_cancel_takes_nothing(self, cars, manager, no_engine):
        order = order_place(item_id=cars.pk, quantity=4)
        order_cancel(order_id=order.id, user=manager)
        assert not inventory_reserve(order_id=order.id).success
        assert stock(cars) == (10, 0, 0)


class TestCustomerCancel:
    """The customer who placed an order may cancel it while it awaits a manager's decision."""

    def awaiting(self, cars, customer) -> Order:
        order = order_place(item_id=cars.pk, quantity=4, placed_by=customer)
        inventory_reserve(order_id=order.id)
        order_request_approval(order_id=order.id, deadline=timezone.now() + timedelta(minutes=3))
        return order

    def test_its_customer_cancels_while_it_awaits_approval(self, cars, alice, no_engine):
        order = self.awaiting(cars, alice)
        order_cancel(order_id=order.id, user=alice)
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert stock(cars) == (10, 0, 0)
        assert ("terminate", order.id) in no_engine
        assert timeline(order)[-1] == f"Order {order.id} has been cancelled by alice."
        assert order.events.get(step="cancelled").detail == "Cancelled by alice"

    def test_another_customer_may_not(self, cars, alice, bob, no_engine):
        order = self.awaiting(cars, alice)
        with pytest.raises(ApprovalNotPermitted):
            order_cancel(order_id=order.id, user=bob)
        order.refresh_from_db()
        assert order.status == OrderStatus.AWAITING_APPROVAL
        assert stock(cars) == (6, 4, 0)
        assert no_engine == []

    def test_not_once_a_manager_has_decided_or_the_order_moved_on(
        self, cars, alice, manager, no_engine
    ):
        decided = self.awaiting(cars, alice)
        Order.objects.filter(pk=decided.id).update(approved=True, decided_by=manager)
        processing = order_place(item_id=cars.pk, quantity=1, placed_by=alice)
        Order.objects.filter(pk=processing.id).update(status=OrderStatus.PROCESSING)
        for order in (decided, processing):
            with pytest.raises(OrderNotCancellable, match="only while it awaits"):
                order_cancel(order_id=order.id, user=alice)
        assert stock(cars) == (6, 4, 0)
        assert no_engine == []
