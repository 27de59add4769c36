"""Order form, order page and list. The engine is faked at orders/workflow_client.py only (no_engine)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from orders.models import Order, OrderStatus
from orders.services.inventory import inventory_reserve
from orders.services.orders import order_notify, order_place, order_request_approval
from orders.tests.conftest import stock


class TestOrderForm:
    def test_form_shows_item_quantity_and_button(self, client, cars, paperclips):
        page = client.get("/").content.decode()
        assert '<label for="id_item">Item</label>' in page
        assert '<label for="id_quantity">Quantity</label>' in page
        assert 'type="number"' in page
        assert "Cars ($5000 each, 10 in stock)" in page
        assert "Place order</button>" in page
        assert "csrfmiddlewaretoken" in page
        assert "/static/django_htmx/htmx-2.min.js" in page

    def test_place_order_redirects_to_its_page(self, client, cars, no_engine):
        response = client.post("/", {"item": cars.pk, "quantity": "2"})
        order = Order.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("orders:detail", args=[order.id])
        assert order.quantity == 2 and order.total_cost == 10000

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"quantity": "0"}, "Order at least 1."),
            ({"quantity": "-3"}, "Order at least 1."),
            ({"quantity": "11"}, "Only 10 Cars in stock; order fewer."),
            ({"quantity": "abc"}, "Enter a whole number."),
            ({"quantity": "1.5"}, "Enter a whole number."),
            ({"quantity": ""}, "This field is required."),
            ({"quantity": "1", "item": "99999"}, "That item is not in the inventory."),
            ({"quantity": "1", "item": "cars"}, "That item is not in the inventory."),
            ({"quantity": "1" + "0" * 30}, "No item is stocked in that number; order fewer."),
            ({"quantity": "1", "form_token": "forged"}, "This form is out of date"),
        ],
    )
    def test_bad_input_shows_error_and_writes_nothing(self, client, cars, no_engine, data, message):
        response = client.post("/", {"item": cars.pk, **data})
        assert response.status_code == 200
        assert message in response.content.decode()
        assert Order.objects.count() == 0
        assert no_engine == []

    def test_the_form_sent_twice_places_one_order(
        self, client, cars, no_engine, django_capture_on_commit_callbacks
    ):
        form = client.get("/").content.decode()
        token = re.search(r'name="form_token" value="([0-9a-f]{32})"', form).group(1)
        with django_capture_on_commit_callbacks(execute=True):
            first = client.post("/", {"item": cars.pk, "quantity": "2", "form_token": token})
            again = client.post("/", {"item": cars.pk, "quantity": "2", "form_token": token})
        assert first.status_code == again.status_code == 302
        assert first["Location"] == again["Location"]
        assert Order.objects.count() == 1
        assert no_engine == [("schedule", Order.objects.get().pk)]
        assert stock(cars) == (10, 0, 0)  # placing reserves nothing; the workflow does
        # A new visit to the form is a new order.
        other = re.search(
            r'name="form_token" value="([0-9a-f]{32})"', client.get("/").content.decode()
        )
        assert other.group(1) != token

    def test_post_without_csrf_token_is_refused(self, cars):
        from django.test import Client

        response = Client(enforce_csrf_checks=True).post("/", {"item": cars.pk, "quantity": "1"})
        assert response.status_code == 403
        assert Order.objects.count() == 0


class TestOrderPage:
    def test_page_shows_status_total_and_timeline(self, client, cars):
        order = order_place(item_id=cars.pk, quantity=2)
        order_notify(
            order_id=order.id, step="received", message="Received order X", status="processing"
        )
        page = client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert "Processing" in page
        assert "$10,000.00" in page
        assert "Received order X" in page
        assert 'hx-trigger="every 1s"' in page

    def test_awaiting_approval_shows_time_left(self, client, cars):
        order = order_place(item_id=cars.pk, quantity=10)
        inventory_reserve(order_id=order.id)
        order_request_approval(order_id=order.id, deadline=timezone.now() + timedelta(seconds=125))
        page = client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert "Awaiting approval" in page
        assert "Time left for approval" in page
        assert "2 min 0" in page

    def test_htmx_poll_returns_fragment(self, client, cars):
        order = order_place(item_id=cars.pk, quantity=1)
        response = client.get(
            reverse("orders:detail", args=[order.id]), headers={"HX-Request": "true"}
        )
        assert response.status_code == 200
        body = response.content.decode()
        assert "<html" not in body and 'id="order-status"' in body

    @pytest.mark.parametrize(
        ("status", "words"),
        [
            (OrderStatus.COMPLETED, "Completed"),
            (OrderStatus.REJECTED, "Rejected"),
            (OrderStatus.CANCELLED, "Cancelled"),
            (OrderStatus.FAILED, "Failed"),
        ],
    )
    def test_final_state_stops_polling(self, client, cars, status, words):
        order = order_place(item_id=cars.pk, quantity=1)
        Order.objects.filter(pk=order.id).update(status=status)
        response = client.get(
            reverse("orders:detail", args=[order.id]), headers={"HX-Request": "true"}
        )
        assert response.status_code == 286
        body = response.content.decode()
        assert words in body and "hx-trigger" not in body

    def test_a_decision_that_came_after_the_timeout_is_shown_as_too_late(
        self, client, cars, manager
    ):
        order = order_place(item_id=cars.pk, quantity=10)
        Order.objects.filter(pk=order.id).update(approved=True, decided_by=manager)
        order_notify(
            order_id=order.id,
            step="timed_out",
            message=f"Payment for order {order.id} has been cancelled due to timeout!",
            status=OrderStatus.CANCELLED,
        )
        page = client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert "Cancelled" in page
        assert "Approved by boss, too late: the approval window had closed" in page

    def test_a_decision_in_time_is_shown_plainly(self, client, cars, manager):
        order = order_place(item_id=cars.pk, quantity=10)
        Order.objects.filter(pk=order.id).update(approved=False, decided_by=manager)
        page = client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert "Rejected by boss<" in page

    def test_unknown_order_is_404(self, client, db):
        assert client.get("/orders/nope/").status_code == 404
        assert client.get("/orders/%3Cscript%3E/").status_code == 404


class TestOrderList:
    def test_list_filters_by_status(self, client, cars):
        done = order_place(item_id=cars.pk, quantity=1)
        Order.objects.filter(pk=done.id).update(status=OrderStatus.COMPLETED)
        waiting = order_place(item_id=cars.pk, quantity=2)
        page = client.get("/orders/?status=completed").content.decode()
        assert done.id in page and waiting.id not in page
        page = client.get("/orders/").content.decode()
        assert done.id in page and waiting.id in page
        # An unknown filter shows everything rather than failing.
        assert client.get("/orders/?status=bogus").status_code == 200

    def test_static_htmx_is_served_locally(self, client, db):
        response = client.get("/static/django_htmx/htmx-2.min.js")
        assert response.status_code == 200
        assert b"htmx" in b"".join(response.streaming_content)
        response.close()
