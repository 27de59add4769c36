"""The order's admin page: read-only, the manager's decision with Approve / Reject behind a
confirmation, the engine's history of its workflow and the link to its trace."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from orders import workflow_client
from orders.exceptions import EngineUnavailable
from orders.models import Order, OrderStatus
from orders.services.approvals import order_approve
from orders.services.orders import order_place
from orders.tests.test_admin import awaiting_order, messages_of
from orders.tests.test_admin_desk import (
    approve_url,
    change_url,
    reject_url,
    section,
    table_rows,
    text_of,
    with_status,
)
from orders.workflow_client import HistoryEvent


class TestOrderPage:
    def test_is_read_only_without_save_buttons(self, client, manager, cars, no_engine):
        order = awaiting_order(cars)
        client.force_login(manager)
        response = client.get(change_url(order))
        html = response.content.decode()
        assert response.status_code == 200
        assert "View order" in html
        for button in ("_save", "_continue", "_addanother"):
            assert f'name="{button}"' not in html
        form = html.split('id="order_form"')[1].split("</form>")[0]
        assert re.findall(r"<(select|textarea)\b", form) == []
        assert [
            tag for tag in re.findall(r"<input\b[^>]*>", form) if 'type="hidden"' not in tag
        ] == []

    def test_a_post_to_the_order_form_changes_nothing(self, client, manager, cars, no_engine):
        order = awaiting_order(cars)
        before = Order.objects.get(pk=order.id)
        client.force_login(manager)
        response = client.post(change_url(order), {"status": "completed", "quantity": "1"})
        assert response.status_code == 403
        after = Order.objects.get(pk=order.id)
        assert (after.status, after.quantity, after.updated_at) == (
            before.status,
            before.quantity,
            before.updated_at,
        )

    def test_money_and_decision_read_plainly(self, client, manager, cars, no_engine):
        order = awaiting_order(cars, quantity=3)
        client.force_login(manager)
        page = text_of(client.get(change_url(order)))
        assert "Total: $15,000.00" in page
        assert "Manager's decision Awaiting a decision:" in page
        order_approve(order_id=order.id, user=manager)
        decided_at = timezone.localtime(Order.objects.get(pk=order.id).decided_at)
        page = text_of(client.get(change_url(order)))
        assert re.search(
            rf"Manager's decision Approved by boss on {decided_at:%b}\.? {decided_at.day}, "
            rf"{decided_at.year}, {decided_at:%-I:%M} [ap]\.m\. Id:",
            page,
        )
        assert "approve-button" not in client.get(change_url(order)).content.decode()

    def test_awaiting_order_shows_time_left_and_both_buttons(
        self, client, manager, cars, no_engine
    ):
        order = awaiting_order(cars, seconds=90)
        client.force_login(manager)
        response = client.get(change_url(order))
        decision = section(response, "decision")
        assert re.search(r"Awaiting a decision: 1 min (29|30) s left", decision)
        html = response.content.decode()
        for url, label in ((approve_url(order), "Approve"), (reject_url(order), "Reject")):
            form = re.search(rf'<form method="post" action="{url}">(.*?)</form>', html, re.S)
            assert form is not None, label
            assert 'name="csrfmiddlewaretoken"' in form.group(1)
            assert (
                f'<button type="submit" class="button {label.lower()}-button">{label}</button>'
                in form.group(1)
            )

    def test_approve_asks_for_confirmation_then_approves(
        self, client, manager, cars, no_engine, django_capture_on_commit_callbacks
    ):
        order = awaiting_order(cars, quantity=10)
        client.force_login(manager)

        # The order page's button: a POST without the confirmation asks first.
        asked = client.post(approve_url(order))
        assert asked.status_code == 200
        assert re.search(
            rf"Are you sure you want to approve order {order.id}: 10 × Cars for \$50,000\.00",
            text_of(asked),
        )
        assert Order.objects.get(pk=order.id).approved is None
        assert no_engine == []
        assert text_of(client.get(approve_url(order))) == text_of(asked)

        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(approve_url(order), {"post": "yes"}, follow=True)

        assert response.redirect_chain == [(change_url(order), 302)]
        assert messages_of(response) == [f"Order {order.id} approved."]
        order.refresh_from_db()
        assert (order.approved, order.decided_by) == (True, manager)
        assert ("approval", (order.id, True)) in no_engine

    def test_reject_asks_for_confirmation_then_rejects(
        self, client, manager, cars, no_engine, django_capture_on_commit_callbacks
    ):
        order = awaiting_order(cars, quantity=10)
        client.force_login(manager)
        asked = text_of(client.post(reject_url(order)))
        assert "Are you sure you want to reject order" in asked
        assert "Yes, reject this order" in asked and "No, take me back" in asked
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reject_url(order), {"post": "yes"}, follow=True)
        assert messages_of(response) == [f"Order {order.id} rejected."]
        order.refresh_from_db()
        assert (order.approved, order.decided_by) == (False, manager)
        assert ("approval", (order.id, False)) in no_engine

    def test_deciding_an_order_no_longer_waiting_is_a_message(
        self, client, manager, cars, no_engine
    ):
        done = with_status(cars, OrderStatus.COMPLETED)
        client.force_login(manager)
        page = client.get(change_url(done))
        assert 'class="button approve-button"' not in page.content.decode()
        assert section(page, "decision") == (
            "Manager's decision No decision: this order did not need one."
        )
        response = client.post(approve_url(done), {"post": "yes"}, follow=True)
        assert response.status_code == 200
        assert messages_of(response) == [
            f"Order {done.id} is not awaiting approval (completed); nothing to approve."
        ]
        response = client.get(reject_url(done), follow=True)
        assert messages_of(response) == [
            f"Order {done.id} is not awaiting a decision (completed); nothing to reject."
        ]
        done.refresh_from_db()
        assert done.approved is None

    def test_deciding_after_the_window_closed_is_a_message(self, client, manager, cars, no_engine):
        order = awaiting_order(cars, seconds=-1)
        client.force_login(manager)
        response = client.post(approve_url(order), {"post": "yes"}, follow=True)
        assert messages_of(response) == [
            f"The approval window for order {order.id} has closed; it will be cancelled."
        ]
        assert Order.objects.get(pk=order.id).approved is None

    def test_an_unknown_order_is_a_message_not_an_error(self, client, manager, db):
        client.force_login(manager)
        response = client.post(
            reverse("admin:orders_order_approve", args=["f" * 32]), {"post": "yes"}, follow=True
        )
        assert response.status_code == 200
        assert messages_of(response) == [
            f"order with ID “{'f' * 32}” doesn’t exist. Perhaps it was deleted?"
        ]


class TestDecidePermission:
    """Refused, grant, allowed."""

    def test_without_permission_no_buttons_and_the_post_is_refused(
        self, client, clerk, cars, no_engine
    ):
        order = awaiting_order(cars)
        client.force_login(clerk)
        page = client.get(change_url(order))
        assert page.status_code == 200
        html = page.content.decode()
        assert "approve-button" not in html and "reject-button" not in html
        assert "Only managers allowed to approve orders can approve or reject it." in text_of(page)
        for url in (approve_url(order), reject_url(order)):
            for response in (
                client.post(url, {"post": "yes"}, follow=True),
                client.post(url, follow=True),
                client.get(url, follow=True),
            ):
                assert response.redirect_chain == [(change_url(order), 302)]
                assert messages_of(response) == ["You are not allowed to approve or reject orders."]
        order.refresh_from_db()
        assert order.approved is None and order.decided_by is None
        assert no_engine == []

    def test_granted_permission_shows_the_buttons_and_decides(
        self, client, clerk, cars, no_engine, django_capture_on_commit_callbacks
    ):
        order = awaiting_order(cars)
        clerk.user_permissions.add(Permission.objects.get(codename="approve_order"))
        clerk = User.objects.get(pk=clerk.pk)
        client.force_login(clerk)
        assert "approve-button" in client.get(change_url(order)).content.decode()
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(approve_url(order), {"post": "yes"}, follow=True)
        assert messages_of(response) == [f"Order {order.id} approved."]
        order.refresh_from_db()
        assert (order.approved, order.decided_by) == (True, clerk)

    def test_staff_who_may_not_see_orders_are_forbidden(self, client, cars, no_engine):
        order = awaiting_order(cars)
        staff = User.objects.create_user("helper", password="pw-helper-123", is_staff=True)
        client.force_login(staff)
        for response in (
            client.get(change_url(order)),
            client.get(approve_url(order)),
            client.post(approve_url(order), {"post": "yes"}),
        ):
            assert response.status_code == 403
        assert Order.objects.get(pk=order.id).approved is None

    def test_anonymous_is_sent_to_login(self, client, cars, no_engine):
        order = awaiting_order(cars)
        response = client.post(approve_url(order), {"post": "yes"})
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
        assert Order.objects.get(pk=order.id).approved is None


class TestEngineHistoryOnTheOrderPage:
    @pytest.mark.django_db(transaction=True)
    def test_shows_the_instances_events_with_their_times(self, client, workflow_engine):
        from orders.models import InventoryItem

        item = InventoryItem.objects.create(name="Paperclip", unit_cost=5, on_hand=100)
        viewer = User.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
        order = order_place(item_id=item.pk, quantity=3)
        workflow_engine.wait_for_completion(order.id)
        client.force_login(viewer)

        response = client.get(change_url(order))

        history = response.content.decode().split('data-testid="engine-history"')[1]
        assert f"Workflow instance <code>{order.id}</code>, as the engine recorded it" in history
        rows = table_rows(history)
        assert rows[0][1:] == ["+0.000 s", "Workflow started", "order_processing_workflow"]
        assert rows[1][2:] == ["Activity scheduled", "notify_activity"]
        assert rows[2][2:] == ["Activity completed", "notify_activity"]
        assert ["Activity completed", "process_payment_activity"] in [row[2:] for row in rows]
        assert rows[-1][2:] == ["Workflow completed", ""]
        # Local wall-clock times to the millisecond, offsets from the start in order.
        assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", row[0]) for row in rows)
        offsets = [float(row[1].strip("+ s")) for row in rows]
        assert offsets == sorted(offsets) and offsets[-1] < 30

    def test_failures_show_their_error_and_offsets_count_from_the_start(
        self, client, manager, cars, no_engine, monkeypatch
    ):
        # daprd's layout: the first turn's marker comes first, stamped after executionStarted.
        order = awaiting_order(cars)
        t0 = timezone.now()

        def at(seconds: float) -> datetime:
            return t0 + timedelta(seconds=seconds)

        def event(seconds, kind, name=None, event_id=-1, scheduled_id=None, failure=None):
            return HistoryEvent(at(seconds), kind, name, event_id, scheduled_id, failure)

        history = [
            event(0.009, "WORKFLOW_STARTED"),
            event(0, "EXECUTION_STARTED", "order_processing_workflow"),
            event(0.02, "TASK_SCHEDULED", "process_payment_activity", event_id=0),
            event(200.5, "WORKFLOW_STARTED"),
            event(200.5, "TASK_FAILED", scheduled_id=0, failure="Payment declined"),
            event(200.6, "EXECUTION_COMPLETED", event_id=1, failure="Payment declined"),
        ]
        monkeypatch.setattr(workflow_client, "workflow_history", lambda instance_id: history)
        client.force_login(manager)
        html = client.get(change_url(order)).content.decode()
        rows = table_rows(html.split('data-testid="engine-history"')[1])
        assert [row[1:] for row in rows] == [
            ["+0.000 s", "Workflow started", "order_processing_workflow"],
            ["+0.020 s", "Activity scheduled", "process_payment_activity"],
            ["+3 min 20.500 s", "Activity failed", "process_payment_activity Payment declined"],
            ["+3 min 20.600 s", "Workflow failed", "Payment declined"],
        ]
        assert html.count('<tr class="engine-failure">') == 2

    def test_engine_away_is_a_note_not_an_error(
        self, client, manager, cars, no_engine, monkeypatch
    ):
        order = awaiting_order(cars)

        def away(instance_id: str) -> None:
            raise EngineUnavailable("workflow engine at 127.0.0.1:1 did not answer (UNAVAILABLE)")

        monkeypatch.setattr(workflow_client, "workflow_history", away)
        client.force_login(manager)
        response = client.get(change_url(order))
        assert response.status_code == 200
        assert section(response, "engine-history") == (
            "Engine history The workflow engine could not be asked for this order's history:"
            " workflow engine at 127.0.0.1:1 did not answer (UNAVAILABLE). The order's own"
            " record above is unaffected; reload later."
        )
        assert "Approve" in section(response, "decision")  # the rest of the page works

    def test_an_order_the_engine_never_heard_of_says_so(self, client, manager, cars, no_engine):
        order = order_place(item_id=cars.pk, quantity=1)
        client.force_login(manager)
        assert section(client.get(change_url(order)), "engine-history") == (
            "Engine history The engine has no workflow instance for this order yet:"
            " the worker schedules it when the engine can be reached."
        )


class TestTraceLink:
    def test_tracing_off_shows_no_link(self, client, manager, cars, no_engine, settings):
        settings.ZIPKIN_UI_URL = ""
        order = awaiting_order(cars)
        client.force_login(manager)
        assert 'data-testid="trace-link"' not in client.get(change_url(order)).content.decode()

    def test_tracing_on_links_a_zipkin_search_by_the_instance_id(
        self, client, manager, cars, no_engine, settings
    ):
        settings.ZIPKIN_UI_URL = "http://127.0.0.1:9411/"
        order = awaiting_order(cars)
        client.force_login(manager)
        html = client.get(change_url(order)).content.decode()
        href = re.search(r'<a href="([^"]+)" rel="noopener" data-testid="trace-link">', html)
        assert href is not None
        url = urlsplit(href.group(1).replace("&amp;", "&"))
        assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:9411", "/zipkin/")
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        assert query["annotationQuery"] == f"durabletask.task.instance_id={order.id}"
        assert query["lookback"] == "range" and query["limit"] == "10"
        # The range covers the order's life: from before it was placed to after now.
        placed_ms = order.created_at.timestamp() * 1000
        assert int(query["startTs"]) < placed_ms
        assert int(query["endTs"]) > timezone.now().timestamp() * 1000
