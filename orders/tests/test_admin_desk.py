"""The approval desk in the admin: the index's summary and the queue (the order's own page:
test_admin_order_page.py), and the page helpers both use."""

from __future__ import annotations

import re
from datetime import timedelta

from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import formats, timezone

from orders.models import Order, OrderStatus
from orders.services.approvals import order_approve
from orders.services.orders import order_place
from orders.tests.test_admin import awaiting_order

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
        # The admin's time format ("7:05 p.m.", and "7 p.m." on the hour).
        when = formats.time_format(timezone.localtime(decided_at), "TIME_FORMAT")
        assert re.search(r"\d", when) and re.search(r"[ap]\.m\.$", when)
        assert f"Approved by boss, {when}" in text_of(client.get(CHANGELIST))

    def test_inventory_prices_read_as_money(self, client, manager, cars, paperclips):
        client.force_login(manager)
        page = text_of(client.get(reverse("admin:orders_inventoryitem_changelist")))
        assert "Cars $5,000.00" in page and "Paperclip $5.00" in page
