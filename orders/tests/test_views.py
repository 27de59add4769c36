"""Order form, order page and list. The engine is faked at orders/workflow_client.py only (no_engine)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orders.models import InventoryItem, Order, OrderStatus
from orders.services.inventory import inventory_reserve
from orders.services.orders import order_notify, order_place, order_request_approval
from orders.tests.conftest import stock


@pytest.fixture
def customer_client(client, alice):
    client.force_login(alice)
    return client


def _awaiting(order: Order, seconds: float = 125) -> None:
    inventory_reserve(order_id=order.id)
    order_request_approval(order_id=order.id, deadline=timezone.now() + timedelta(seconds=seconds))


def _poll(client, order: Order, **params: str):
    return client.get(
        reverse("orders:detail", args=[order.id]), params, headers={"HX-Request": "true"}
    )


class TestOrderForm:
    def test_form_shows_items_as_cards_quantity_and_button(self, customer_client, cars, paperclips):
        page = customer_client.get("/").content.decode()
        assert "<legend>Item</legend>" in page
        assert page.count('type="radio" name="item"') == 2
        assert re.search(r'<label class="item-card" for="id_item_\d">', page)
        assert "Cars</span>" in page and "$5,000.00 each" in page and "10 in stock" in page
        assert "Paperclip</span>" in page and "$5.00 each" in page and "100 in stock" in page
        assert '<label for="id_quantity">Quantity</label>' in page
        assert 'type="number"' in page
        assert "Place order</button>" in page
        assert "csrfmiddlewaretoken" in page
        assert "/static/django_htmx/htmx-2.min.js" in page
        assert f'hx-get="{reverse("orders:quote")}"' in page

    def test_an_item_out_of_stock_cannot_be_chosen(self, customer_client, cars):
        InventoryItem.objects.filter(pk=cars.pk).update(on_hand=0)
        page = customer_client.get("/").content.decode()
        assert re.search(r'<input type="radio" name="item" value="\d+"[^>]* disabled', page)
        assert "Out of stock" in page

    def test_place_order_redirects_to_its_page_and_records_the_customer(
        self, customer_client, cars, alice, no_engine
    ):
        response = customer_client.post("/", {"item": cars.pk, "quantity": "2"})
        order = Order.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("orders:detail", args=[order.id])
        assert order.quantity == 2 and order.total_cost == 10000
        assert order.placed_by == alice

    @pytest.mark.parametrize(
        ("data", "field", "message"),
        [
            ({"quantity": "0"}, "quantity", "Order at least 1."),
            ({"quantity": "-3"}, "quantity", "Order at least 1."),
            ({"quantity": "11"}, "quantity", "Only 10 Cars in stock; order fewer."),
            ({"quantity": "abc"}, "quantity", "Enter a whole number."),
            ({"quantity": "1.5"}, "quantity", "Enter a whole number."),
            ({"quantity": ""}, "quantity", "This field is required."),
            ({"quantity": "1", "item": ""}, "item", "Choose an item."),
            ({"quantity": "1", "item": "99999"}, "item", "That item is not in the inventory."),
            ({"quantity": "1", "item": "cars"}, "item", "That item is not in the inventory."),
            (
                {"quantity": "1" + "0" * 30},
                "quantity",
                "No item is stocked in that number; order fewer.",
            ),
            ({"quantity": "1", "form_token": "forged"}, None, "This form is out of date"),
        ],
    )
    def test_bad_input_shows_error_next_to_its_field_and_writes_nothing(
        self, customer_client, cars, no_engine, data, field, message
    ):
        response = customer_client.post("/", {"item": cars.pk, **data})
        assert response.status_code == 200
        page = response.content.decode()
        if field is None:
            assert re.search(rf'class="errors" role="alert">.*{message}', page, re.S)
        else:
            # The message sits in the field's own error list, which the control points to.
            assert re.search(rf'<ul class="errorlist" id="id_{field}_error"><li>{message}', page)
            assert f'aria-describedby="id_{field}_error"' in page
        assert Order.objects.count() == 0
        assert no_engine == []

    def test_a_refusal_from_the_service_is_shown_at_its_field(
        self, customer_client, cars, no_engine, monkeypatch
    ):
        # Stock taken between the form's check and the service's.
        from orders import forms

        monkeypatch.setattr(forms.OrderForm, "clean", lambda self: self.cleaned_data)
        InventoryItem.objects.filter(pk=cars.pk).update(on_hand=1)
        page = customer_client.post("/", {"item": cars.pk, "quantity": "3"}).content.decode()
        assert re.search(r'id="id_quantity_error"><li>Only 1 Cars available; you asked for 3', page)
        assert Order.objects.count() == 0

    def test_the_form_sent_twice_places_one_order(
        self, customer_client, cars, no_engine, django_capture_on_commit_callbacks
    ):
        form = customer_client.get("/").content.decode()
        token = re.search(r'name="form_token" value="([0-9a-f]{32})"', form).group(1)
        data = {"item": cars.pk, "quantity": "2", "form_token": token}
        with django_capture_on_commit_callbacks(execute=True):
            first = customer_client.post("/", data)
            again = customer_client.post("/", data)
        assert first.status_code == again.status_code == 302
        assert first["Location"] == again["Location"]
        assert Order.objects.count() == 1
        assert no_engine == [("schedule", Order.objects.get().pk)]
        assert stock(cars) == (10, 0, 0)  # placing reserves nothing; the workflow does
        # A new visit to the form is a new order.
        other = re.search(
            r'name="form_token" value="([0-9a-f]{32})"', customer_client.get("/").content.decode()
        )
        assert other.group(1) != token

    def test_another_customer_sending_the_same_token_places_their_own_order(
        self, customer_client, cars, bob, no_engine
    ):
        token = "ab" * 16
        customer_client.post("/", {"item": cars.pk, "quantity": "2", "form_token": token})
        other = Client()
        other.force_login(bob)
        response = other.post("/", {"item": cars.pk, "quantity": "2", "form_token": token})
        assert Order.objects.count() == 2
        assert Order.objects.get(placed_by=bob).id in response["Location"]

    def test_post_without_csrf_token_is_refused(self, cars, alice):
        client = Client(enforce_csrf_checks=True)
        client.force_login(alice)
        response = client.post("/", {"item": cars.pk, "quantity": "1"})
        assert response.status_code == 403
        assert Order.objects.count() == 0


class TestQuote:
    def quote(self, client, **params: object) -> str:
        response = client.get(reverse("orders:quote"), params, headers={"HX-Request": "true"})
        assert response.status_code == 200
        return response.content.decode()

    def test_total_for_the_chosen_item_and_quantity(self, customer_client, cars):
        body = self.quote(customer_client, item=cars.pk, quantity=3)
        assert "<html" not in body
        assert "$15,000.00" in body and "3 × $5,000.00" in body
        assert "approve" not in body

    def test_a_total_over_the_threshold_says_a_manager_must_approve(
        self, customer_client, cars, settings
    ):
        settings.ORDER_APPROVAL_THRESHOLD = 10000
        body = self.quote(customer_client, item=cars.pk, quantity=3)
        assert "$15,000.00" in body
        assert "Over $10,000.00: a manager must approve this order before it is paid." in body
        # At the threshold itself, no approval (the workflow asks only above it).
        assert "approve" not in self.quote(customer_client, item=cars.pk, quantity=2)

    def test_what_cannot_be_ordered_says_why_or_what_is_missing(self, customer_client, cars):
        assert "Only 10 Cars in stock; order fewer." in self.quote(
            customer_client, item=cars.pk, quantity=11
        )
        assert "Choose an item and a quantity" in self.quote(customer_client, quantity=2)

    def test_anonymous_visitor_gets_no_quote(self, client, cars):
        response = client.get(reverse("orders:quote"), {"item": cars.pk, "quantity": 1})
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("orders:login"))


class TestOrderPage:
    def test_page_shows_status_badge_total_and_steps(self, customer_client, cars, alice):
        order = order_place(item_id=cars.pk, quantity=2, placed_by=alice)
        order_notify(
            order_id=order.id, step="received", message="Received order X", status="processing"
        )
        page = customer_client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert '<span data-testid="status" class="badge badge-processing">Processing</span>' in page
        assert "$10,000.00" in page
        assert re.search(r'data-step="received".*Received</span>.*took <span', page, re.S)
        assert re.search(
            r'data-step="reserve"[^>]*aria-current="step".*Reserving stock', page, re.S
        )
        assert 'hx-trigger="every 1s"' in page

    def test_awaiting_approval_shows_time_left_counting_down_and_cancel(
        self, customer_client, cars, alice
    ):
        order = order_place(item_id=cars.pk, quantity=10, placed_by=alice)
        _awaiting(order)
        page = customer_client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert "Awaiting approval" in page
        assert "Time left for approval" in page
        assert re.search(r'role="timer" data-countdown="12\d\.\d{3}">2 min 0\d s<', page)
        assert "/static/orders/countdown.js" in page
        assert re.search(r'<button type="submit" id="cancel-order"[^>]*>Cancel order<', page)

    def test_staff_see_a_customers_order_but_cancel_in_the_admin(
        self, client, cars, alice, manager
    ):
        order = order_place(item_id=cars.pk, quantity=10, placed_by=alice)
        _awaiting(order)
        client.force_login(manager)
        page = client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert "Awaiting approval" in page and " by alice" in page
        assert "Cancel order" not in page

    def test_htmx_poll_returns_fragment_then_nothing_until_it_changes(
        self, customer_client, cars, alice
    ):
        order = order_place(item_id=cars.pk, quantity=1, placed_by=alice)
        response = _poll(customer_client, order)
        assert response.status_code == 200
        body = response.content.decode()
        assert "<html" not in body and 'id="order-status"' in body
        seen = re.search(r'hx-vals=\'\{"seen": "([^"]+)"\}\'', body).group(1)

        # Nothing new: 204, and htmx leaves the page as it is.
        unchanged = _poll(customer_client, order, seen=seen)
        assert unchanged.status_code == 204 and unchanged.content == b""

        order_notify(order_id=order.id, step="received", message="Received", status="processing")
        changed = _poll(customer_client, order, seen=seen)
        assert changed.status_code == 200
        assert "Processing" in changed.content.decode()

    @pytest.mark.parametrize(
        ("status", "words"),
        [
            (OrderStatus.COMPLETED, "Completed"),
            (OrderStatus.REJECTED, "Rejected"),
            (OrderStatus.CANCELLED, "Cancelled"),
            (OrderStatus.FAILED, "Failed"),
        ],
    )
    def test_final_state_stops_polling(self, customer_client, cars, alice, status, words):
        order = order_place(item_id=cars.pk, quantity=1, placed_by=alice)
        Order.objects.filter(pk=order.id).update(status=status)
        response = _poll(customer_client, order, seen="an older version")
        assert response.status_code == 286
        body = response.content.decode()
        assert words in body and "hx-trigger" not in body

    def test_a_decision_that_came_after_the_timeout_is_shown_as_too_late(
        self, customer_client, cars, alice, manager
    ):
        order = order_place(item_id=cars.pk, quantity=10, placed_by=alice)
        Order.objects.filter(pk=order.id).update(approved=True, decided_by=manager)
        order_notify(
            order_id=order.id,
            step="timed_out",
            message=f"Payment for order {order.id} has been cancelled due to timeout!",
            status=OrderStatus.CANCELLED,
        )
        page = customer_client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert "Cancelled" in page
        assert "Approved by boss, too late: the approval window had closed" in page

    def test_a_decision_in_time_is_shown_plainly(self, customer_client, cars, alice, manager):
        order = order_place(item_id=cars.pk, quantity=10, placed_by=alice)
        Order.objects.filter(pk=order.id).update(approved=False, decided_by=manager)
        page = customer_client.get(reverse("orders:detail", args=[order.id])).content.decode()
        assert "Rejected by boss<" in page

    def test_unknown_order_is_404(self, customer_client):
        assert customer_client.get("/orders/nope/").status_code == 404
        assert customer_client.get("/orders/%3Cscript%3E/").status_code == 404

    def test_another_customers_order_is_404_page_and_fragment(self, client, cars, alice, bob):
        order = order_place(item_id=cars.pk, quantity=1, placed_by=alice)
        client.force_login(bob)
        page = client.get(reverse("orders:detail", args=[order.id]))
        assert page.status_code == 404
        assert _poll(client, order).status_code == 404

    def test_an_order_nobody_placed_is_staffs_only(self, client, cars, alice, manager):
        """Orders from before shop accounts have no customer: only staff see them."""
        order = order_place(item_id=cars.pk, quantity=1)
        client.force_login(alice)
        assert client.get(reverse("orders:detail", args=[order.id])).status_code == 404
        client.force_login(manager)
        assert client.get(reverse("orders:detail", args=[order.id])).status_code == 200


class TestCustomerCancel:
    def url(self, order: Order) -> str:
        return reverse("orders:cancel", args=[order.id])

    def test_customer_cancels_a_waiting_order_and_its_stock_returns(
        self, customer_client, cars, alice, no_engine
    ):
        order = order_place(item_id=cars.pk, quantity=4, placed_by=alice)
        _awaiting(order)
        assert stock(cars) == (6, 4, 0)
        response = customer_client.post(self.url(order), follow=True)
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert stock(cars) == (10, 0, 0)
        assert ("terminate", order.id) in no_engine
        page = response.content.decode()
        assert "Your order is cancelled and its stock returned." in page
        assert "Cancelled by alice. 4 Cars returned to stock." in page

    def test_an_order_past_approval_is_not_cancelled_here(
        self, customer_client, cars, alice, no_engine
    ):
        order = order_place(item_id=cars.pk, quantity=4, placed_by=alice)
        inventory_reserve(order_id=order.id)
        Order.objects.filter(pk=order.id).update(status=OrderStatus.PROCESSING)
        page = customer_client.post(self.url(order), follow=True).content.decode()
        assert "can be cancelled only while it awaits a manager&#x27;s approval" in page
        order.refresh_from_db()
        assert order.status == OrderStatus.PROCESSING
        assert stock(cars) == (6, 4, 0)
        assert no_engine == []

    def test_another_customer_gets_404_and_changes_nothing(
        self, client, cars, alice, bob, no_engine
    ):
        order = order_place(item_id=cars.pk, quantity=4, placed_by=alice)
        _awaiting(order)
        client.force_login(bob)
        assert client.post(self.url(order)).status_code == 404
        order.refresh_from_db()
        assert order.status == OrderStatus.AWAITING_APPROVAL
        assert stock(cars) == (6, 4, 0)

    def test_cancel_takes_a_post_with_its_csrf_token(self, cars, alice, no_engine):
        order = order_place(item_id=cars.pk, quantity=4, placed_by=alice)
        _awaiting(order)
        client = Client(enforce_csrf_checks=True)
        client.force_login(alice)
        assert client.get(self.url(order)).status_code == 405
        assert client.post(self.url(order)).status_code == 403
        order.refresh_from_db()
        assert order.status == OrderStatus.AWAITING_APPROVAL


class TestOrderList:
    def test_list_filters_by_status(self, customer_client, cars, alice):
        done = order_place(item_id=cars.pk, quantity=1, placed_by=alice)
        Order.objects.filter(pk=done.id).update(status=OrderStatus.COMPLETED)
        waiting = order_place(item_id=cars.pk, quantity=2, placed_by=alice)
        page = customer_client.get("/orders/?status=completed").content.decode()
        assert done.id in page and waiting.id not in page
        page = customer_client.get("/orders/").content.decode()
        assert done.id in page and waiting.id in page
        # An unknown filter shows everything rather than failing.
        assert customer_client.get("/orders/?status=bogus").status_code == 200

    def test_a_customer_sees_only_their_orders_and_staff_see_all(
        self, client, cars, alice, bob, manager
    ):
        mine = order_place(item_id=cars.pk, quantity=1, placed_by=alice)
        theirs = order_place(item_id=cars.pk, quantity=2, placed_by=bob)
        client.force_login(alice)
        page = client.get("/orders/").content.decode()
        assert "Your orders" in page
        assert mine.id in page and theirs.id not in page
        client.force_login(manager)
        page = client.get("/orders/").content.decode()
        assert "All orders" in page
        assert mine.id in page and theirs.id in page
        assert '<td data-label="Customer">bob</td>' in page

    def test_static_files_are_served_locally(self, client, db):
        for path, marker in [
            ("/static/django_htmx/htmx-2.min.js", b"htmx"),
            ("/static/orders/site.css", b":focus-visible"),
            ("/static/orders/countdown.js", b"data-countdown"),
        ]:
            response = client.get(path)
            assert response.status_code == 200, path
            assert marker in b"".join(response.streaming_content)
            response.close()


class TestAccounts:
    @pytest.mark.parametrize("path", ["/", "/orders/", "/orders/abc/"])
    def test_anonymous_visitor_is_sent_to_log_in_and_back(self, client, db, path):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('orders:login')}?next={path}"

    def test_login_page_has_djangos_labels_and_returns_to_next(self, client, alice):
        page = client.get(reverse("orders:login"), {"next": "/orders/"}).content.decode()
        assert '<label for="id_username">Username</label>' in page
        assert '<label for="id_password">Password</label>' in page
        assert '<button type="submit" class="button primary">Log in</button>' in page
        response = client.post(
            reverse("orders:login"),
            {"username": "alice", "password": "pw-alice-123", "next": "/orders/"},
        )
        assert response.status_code == 302 and response["Location"] == "/orders/"

    def test_a_wrong_password_says_so_and_logs_nobody_in(self, client, alice):
        response = client.post(
            reverse("orders:login"), {"username": "alice", "password": "wrong-password"}
        )
        assert response.status_code == 200
        assert "Please enter a correct username and password." in response.content.decode()
        assert "_auth_user_id" not in client.session

    def test_staff_log_in_on_the_same_page_and_reach_the_admin(self, client, manager):
        response = client.post(
            reverse("orders:login"), {"username": "boss", "password": "pw-boss-123"}
        )
        assert response.status_code == 302 and response["Location"] == "/"
        assert client.get("/admin/").status_code == 200
        assert "Approval desk" in client.get("/").content.decode()

    def test_sign_up_makes_a_customer_logged_in_at_the_order_form(self, client, db):
        response = client.post(
            reverse("orders:signup"),
            {"username": "carol", "password1": "a-Long-pass-4821", "password2": "a-Long-pass-4821"},
        )
        assert response.status_code == 302 and response["Location"] == "/"
        page = client.get("/").content.decode()
        assert "Place an order" in page and "carol" in page
        carol = User.objects.get(username="carol")
        assert not carol.is_staff and not carol.has_perm("orders.view_order")

    @pytest.mark.parametrize(
        ("password1", "password2", "message"),
        [
            ("short", "short", "This password is too short."),
            ("a-Long-pass-4821", "a-Long-pass-4822", "The two password fields didn"),
        ],
    )
    def test_sign_up_refuses_bad_passwords(self, client, db, password1, password2, message):
        response = client.post(
            reverse("orders:signup"),
            {"username": "carol", "password1": password1, "password2": password2},
        )
        assert response.status_code == 200
        assert message in response.content.decode()
        assert not User.objects.filter(username="carol").exists()

    def test_sign_up_refuses_a_taken_name(self, client, alice):
        response = client.post(
            reverse("orders:signup"),
            {"username": "Alice", "password1": "a-Long-pass-4821", "password2": "a-Long-pass-4821"},
        )
        assert "A user with that username already exists." in response.content.decode()

    def test_log_out_is_a_post(self, customer_client):
        assert customer_client.get(reverse("orders:logout")).status_code == 405
        response = customer_client.post(reverse("orders:logout"))
        assert response.status_code == 302 and response["Location"] == reverse("orders:login")
        assert customer_client.get("/").status_code == 302
