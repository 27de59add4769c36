from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from orders.models import InventoryItem, Order, OrderStatus
from orders.services.inventory import inventory_reserve
from orders.services.orders import order_place, order_request_approval
from orders.tests.conftest import stock, timeline, wait_until

CHANGELIST = reverse("admin:orders_order_changelist")


def awaiting_order(item, quantity=10, seconds=120) -> Order:
    order = order_place(item_id=item.pk, quantity=quantity)
    inventory_reserve(order_id=order.id)
    order_request_approval(order_id=order.id, deadline=timezone.now() + timedelta(seconds=seconds))
    return order


def run_action(client, action: str, *orders: Order):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [o.id for o in orders]},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


class TestApprovePermission:
    """Refused, grant, allowed."""

    def test_without_permission_approve_is_neither_shown_nor_run(
        self, client, clerk, cars, no_engine
    ):
        order = awaiting_order(cars)
        client.force_login(clerk)
        page = client.get(CHANGELIST).content.decode()
        assert "Approve selected orders" not in page
        assert "Reject selected orders" not in page
        assert "Cancel selected orders" in page
        run_action(client, "approve_orders", order)
        run_action(client, "reject_orders", order)
        order.refresh_from_db()
        assert order.approved is None
        assert no_engine == []

    def test_granted_permission_shows_and_runs_approve(
        self, client, clerk, cars, no_engine, django_capture_on_commit_callbacks
    ):
        order = awaiting_order(cars)
        clerk.user_permissions.add(Permission.objects.get(codename="approve_order"))
        client.force_login(clerk)
        assert "Approve selected orders" in client.get(CHANGELIST).content.decode()
        with django_capture_on_commit_callbacks(execute=True):
            response = run_action(client, "approve_orders", order)
        assert messages_of(response) == ["1 order approved."]
        order.refresh_from_db()
        assert order.approved is True
        assert order.decided_by == clerk
        assert ("approval", (order.id, True)) in no_engine

    def test_anonymous_is_sent_to_login(self, client, cars, no_engine):
        order = awaiting_order(cars)
        response = client.post(
            CHANGELIST, {"action": "approve_orders", "_selected_action": [order.id]}
        )
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]
        order.refresh_from_db()
        assert order.approved is None


class TestOrderActions:
    def test_approval_queue_lists_awaiting_orders_first_with_time_left(
        self, client, manager, cars, no_engine
    ):
        order_place(item_id=cars.pk, quantity=1)
        waiting = awaiting_order(cars, quantity=5, seconds=90)
        client.force_login(manager)
        response = client.get(CHANGELIST)
        rows = list(response.context["cl"].result_list)
        assert rows[0].id == waiting.id
        page = response.content.decode()
        assert waiting.id in page
        assert "1 min 2" in page or "1 min 3" in page  # ~90 s left

    def test_reject_selected_orders(self, client, manager, cars, no_engine):
        orders = [awaiting_order(cars, quantity=3), awaiting_order(cars, quantity=3)]
        client.force_login(manager)
        response = run_action(client, "reject_orders", *orders)
        assert messages_of(response) == ["2 orders rejected."]
        for order in orders:
            order.refresh_from_db()
            assert order.approved is False and order.decided_by == manager

    def test_approving_an_order_not_awaiting_is_a_message(self, client, manager, cars, no_engine):
        done = order_place(item_id=cars.pk, quantity=1)
        Order.objects.filter(pk=done.id).update(status=OrderStatus.COMPLETED)
        client.force_login(manager)
        response = run_action(client, "approve_orders", done)
        assert response.status_code == 200
        assert messages_of(response) == [
            f"Order {done.id} is not awaiting approval (completed); nothing to approve."
        ]
        done.refresh_from_db()
        assert done.approved is None

    def test_cancel_releases_stock(self, client, manager, cars, no_engine):
        order = awaiting_order(cars, quantity=4)
        assert stock(cars) == (6, 4, 0)
        client.force_login(manager)
        response = run_action(client, "cancel_orders", order)
        assert messages_of(response) == ["1 order cancelled."]
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert stock(cars) == (10, 0, 0)
        assert ("terminate", order.id) in no_engine
        response = run_action(client, "cancel_orders", order)
        assert messages_of(response) == [f"Order {order.id} is already cancelled."]

    def test_order_page_in_admin_shows_timeline(self, client, manager, cars, no_engine):
        order = awaiting_order(cars)
        client.force_login(manager)
        page = client.get(reverse("admin:orders_order_change", args=[order.id])).content.decode()
        assert "Requesting approval for payment of 50000 USD for 10 cars" in page


class TestInventoryAdmin:
    def test_restock_action_adds_units(self, client, cars, paperclips):
        admin_user = User.objects.create_superuser("root", password="pw-root-123")
        client.force_login(admin_user)
        response = client.post(
            reverse("admin:orders_inventoryitem_changelist"),
            {"action": "restock", "_selected_action": [cars.pk, paperclips.pk], "quantity": "5"},
            follow=True,
        )
        assert messages_of(response) == ["Restocked 2 items by 5 units each."]
        assert stock(cars) == (15, 0, 0)
        assert InventoryItem.objects.get(pk=paperclips.pk).on_hand == 105

    @pytest.mark.parametrize("units", ["-5", "0", "abc", "1.5", "\u00b2", "1" + "0" * 30])
    def test_restock_by_a_bad_number_says_why_and_changes_nothing(
        self, client, cars, paperclips, units
    ):
        client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
        response = client.post(
            reverse("admin:orders_inventoryitem_changelist"),
            {"action": "restock", "_selected_action": [cars.pk, paperclips.pk], "quantity": units},
            follow=True,
        )
        assert response.status_code == 200
        assert messages_of(response) == ["Restock by a whole number from 1 to 2147483647."]
        assert stock(cars) == (10, 0, 0)
        assert InventoryItem.objects.get(pk=paperclips.pk).on_hand == 100

    def test_a_new_item_cannot_start_with_more_units_than_any_column_holds(self, client, db):
        client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
        response = client.post(
            reverse("admin:orders_inventoryitem_add"),
            {"name": "Jets", "unit_cost": "1", "on_hand": str(2**40)},
        )
        assert response.status_code == 200
        assert "less than or equal to 2147483647" in response.content.decode()
        assert not InventoryItem.objects.filter(name="Jets").exists()

    def test_restock_past_what_an_item_can_hold_names_the_item(self, client, cars, paperclips):
        client.force_login(User.objects.create_superuser("root", password="pw-root-123"))
        response = client.post(
            reverse("admin:orders_inventoryitem_changelist"),
            {
                "action": "restock",
                "_selected_action": [cars.pk, paperclips.pk],
                "quantity": str(2**31 - 1 - 50),
            },
            follow=True,
        )
        assert messages_of(response) == [
            "Paperclip cannot hold 2147483597 more units: free, reserved and sold units together"
            " must not exceed 2147483647.",
            "Restocked 1 item by 2147483597 units.",
        ]
        assert stock(cars) == (2**31 - 1 - 40, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_admin_approve_completes_the_workflow(client, workflow_engine):
    cars = InventoryItem.objects.create(name="Cars", unit_cost=5000, on_hand=20)
    manager = User.objects.create_superuser("boss", password="pw-boss-123")
    order = order_place(item_id=cars.pk, quantity=12)
    wait_until(lambda: Order.objects.get(pk=order.id).status == OrderStatus.AWAITING_APPROVAL)
    client.force_login(manager)
    response = run_action(client, "approve_orders", order)
    assert messages_of(response) == ["1 order approved."]
    order = workflow_engine.wait_for_completion(order.id)
    assert order.status == OrderStatus.COMPLETED
    assert stock(cars) == (8, 0, 12)
    assert timeline(order)[-1] == f"Order {order.id} has completed!"
