"""The approval desk in the admin: the index's summary, the queue, the order's own page."""

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
from orders.workflow_client import HistoryEvent

INDEX = reverse("admin:index")
CHANGELIST = reverse("admin:orders_order_changelist")


def change_url(order: Order) -> str:
    return reverse("admin:orders_order_change", args=[order.id])


def approve_url(order: Order) -> str:
    return reverse("admin:orders_order_approve", args=[order.id])


def reject_url(order: Order) -> str:
    return reverse("admin:orders_order_reject", args=[order.id])


def plain(html: str) -> str:
    """Text as a reader sees it: tags stripped, white space folded."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    return re.sub(r" (?=[:.,;?)])", "", text).replace("&#x27;", "'")


def text_of(response) -> str:
    return plain(response.content.decode())


def section(response, testid: str) -> str:
    """The text of the <section> marked ``data-testid``."""
    html = response.content.decode()
    start = html.index(">", html.index(f'data-testid="{testid}"')) + 1
    return plain(html[start : html.index("</section>", start)])


def table_rows(html: str) -> list[list[str]]:
    """The body rows of the first table in ``html``, each a list of its cells' text."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        [plain(cell) for cell in re.findall(r"<t[dh]\b[^>]*>(.*?)</t[dh]>", row, re.S)]
        for row in re.findall(r"<tr\b[^>]*>(.*?)</tr>", body, re.S)
    ]


def with_status(item, status: OrderStatus, quantity: int = 1) -> Order:
    order = order_place(item_id=item.pk, quantity=quantity)
    Order.objects.filter(pk=order.id).update(status=status)
    return order


class TestApprovalDeskOnTheIndex:
    def test_counts_orders_awaiting_approval_most_urgent_first_with_time_left(
        self, client, manager, cars, no_engine
    ):
        later = awaiting_order(cars, quantity=2, seconds=150)
        soonest = awaiting_order(cars, quantity=3, seconds=40)
        middle = awaiting_order(cars, quantity=2, seconds=90)
        decided = awaiting_order(cars, quantity=1, seconds=20)
        order_approve(order_id=decided.id, user=manager)  # waits for the engine, not a manager
        client.force_login(manager)

        response = client.get(INDEX)

        assert section(response, "approval-desk").startswith(
            "Approval desk 3 orders await approval Most urgent first"
        )
        rows = re.findall(
            r'href="/admin/orders/order/([0-9a-f]{32})/change/"',
            response.content.decode().split('data-testid="most-urgent"')[1].split("</table>")[0],
        )
        assert rows == [soonest.id, middle.id, later.id]
        urgent = section(response, "approval-desk")
        assert re.search(r"3 × Cars \$15,000\.00 (39|40) s", urgent)
        assert re.search(r"2 × Cars \$10,000\.00 1 min (29|30) s", urgent)

    def test_one_order_awaiting_reads_in_the_singular(self, client, manager, cars, no_engine):
        awaiting_order(cars)
        client.force_login(manager)
        assert "1 order awaits approval" in text_of(client.get(INDEX))

    def test_nothing_awaiting_says_so(self, client, manager, cars, no_engine):
        with_status(cars, OrderStatus.COMPLETED)
        client.force_login(manager)
        response = client.get(INDEX)
        assert "No orders await approval." in text_of(response)
        assert 'data-testid="most-urgent"' not in response.content.decode()

    def test_counts_todays_orders_by_status(self, client, manager, cars, paperclips, no_engine):
        for _ in range(2):
            with_status(paperclips, OrderStatus.COMPLETED)
        with_status(paperclips, OrderStatus.FAILED)
        awaiting_order(cars)
        yesterday = with_status(paperclips, OrderStatus.COMPLETED)
        Order.objects.filter(pk=yesterday.id).update(
            created_at=timezone.now() - timedelta(days=1, hours=1)
        )
        client.force_login(manager)

        response = client.get(INDEX)

        today = section(response, "approval-desk").split("Today's orders ")[1]
        assert today == "Awaiting approval 1 Completed 2 Failed 1 4 in all."
        # Each count leads to the queue filtered by that status and today.
        day = timezone.localdate()
        assert (
            f'href="{CHANGELIST}?status__exact=completed&amp;created_at__day={day.day}'
            f"&amp;created_at__month={day.month}&amp;created_at__year={day.year}"
            in response.content.decode()
        )

    def test_todays_count_link_lists_todays_orders_of_that_status(
        self, client, manager, paperclips, no_engine
    ):
        today = with_status(paperclips, OrderStatus.COMPLETED)
        old = with_status(paperclips, OrderStatus.COMPLETED)
        Order.objects.filter(pk=old.id).update(created_at=timezone.now() - timedelta(days=2))
        with_status(paperclips, OrderStatus.FAILED)
        client.force_login(manager)
        day = timezone.localdate()
        response = client.get(
            CHANGELIST,
            {
                "status__exact": "completed",
                "created_at__day": day.day,
                "created_at__month": day.month,
                "created_at__year": day.year,
            },
        )
        assert [order.id for order in response.context["cl"].result_list] == [today.id]

    def test_keeps_the_stock_app_list(self, client, manager, cars, no_engine):
        client.force_login(manager)
        page = text_of(client.get(INDEX))
        assert "Inventory items" in page and "Orders" in page and "Recent actions" in page


class TestApprovalDeskPermission:
    """Refused, grant, allowed."""

    def test_staff_who_may_not_see_orders_get_no_desk(self, client, cars, no_engine):
        awaiting_order(cars)
        staff = User.objects.create_user("helper", password="pw-helper-123", is_staff=True)
        client.force_login(staff)
        response = client.get(INDEX)
        assert response.status_code == 200
        assert 'data-testid="approval-desk"' not in response.content.decode()

    def test_granted_view_permission_shows_the_desk(self, client, cars, no_engine):
        awaiting_order(cars)
        staff = User.objects.create_user("helper", password="pw-helper-123", is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_order"))
        client.force_login(User.objects.get(pk=staff.pk))
        assert "1 order awaits approval" in text_of(client.get(INDEX))


class TestOrderQueue:
    def test_awaiting_orders_come_first_even_when_placed_earlier(
        self, client, manager, cars, no_engine
    ):
        urgent = awaiting_order(cars, quantity=2, seconds=30)
        relaxed = awaiting_order(cars, quantity=2, seconds=180)
        for _ in range(3):
            with_status(cars, OrderStatus.COMPLETED)  # placed after the awaiting ones
        client.force_login(manager)
        rows = list(client.get(CHANGELIST).context["cl"].result_list)
        assert [row.id for row in rows[:2]] == [urgent.id, relaxed.id]

    def test_columns_are_short_and_money_reads_as_on_the_site(
        self, client, manager, cars, no_engine
    ):
        order = awaiting_order(cars, quantity=3, seconds=90)
        client.force_login(manager)
        response = client.get(CHANGELIST)
        html = response.content.decode()
        [row] = table_rows(html.split('id="result_list"')[1])
        assert row[1:6] == [
            f"{order.id[:8]}… {order.id}",
            "3 × Cars",
            "$15,000.00",
            "Awaiting approval",
            row[5],
        ]
        assert re.fullmatch(r"1 min (29|30) s", row[5])
        assert "15000.00" not in html

    def test_a_decision_shows_who_and_when(self, client, manager, cars, no_engine):
        order = awaiting_order(cars)
        order_approve(order_id=order.id, user=manager)
        client.force_login(manager)
        decided_at = Order.objects.get(pk=order.id).decided_at
        when = timezone.localtime(decided_at).strftime("%-I:%M")
        assert re.search(rf"Approved by boss, {when} [ap]\.m\.", text_of(client.get(CHANGELIST)))

    def test_inventory_prices_read_as_money(self, client, manager, cars, paperclips):
        client.force_login(manager)
        page = text_of(client.get(reverse("admin:orders_inventoryitem_changelist")))
        assert "Cars $5,000.00" in page and "Paperclip $5.00" in page


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
