"""The approval desk in a real browser (Debian's chromium through Playwright): it fits 1280 px,
passes axe-core, and a manager decides with the keyboard; SCREENSHOTS=1 writes the pictures
docs/webapp.md shows."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from orders.models import InventoryItem, Order, OrderStatus
from orders.services.orders import order_place
from orders.tests.conftest import stock, wait_until
from orders.tests.test_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"
WIDTHS = [1280, 375]


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the ORM calls here are plain
    # synchronous test code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    assert os.path.exists(CHROMIUM), "Debian's chromium is required (make browser)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Any, width: int) -> Any:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    # No network at run time: anything but the live server is a failure.
    page.route(re.compile(r"^https?://(?!localhost|127\.0\.0\.1)"), lambda route: route.abort())
    return page


def log_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/admin/(?!login)"))


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{violation['id']}: {violation['help']}: {[node['target'] for node in violation['nodes']]}"
        for violation in results.response["violations"]
        if violation["impact"] in {"serious", "critical"}
    ]


def screenshot(page: Any, name: str) -> None:
    if os.environ.get("SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def a_days_orders(manager: User) -> list[Order]:
    """What a manager's queue holds on a busy day: every status, some decided, some waiting."""
    computers = InventoryItem.objects.create(
        name="Computers", unit_cost=Decimal("500"), on_hand=100_000
    )
    cars = InventoryItem.objects.create(name="Cars", unit_cost=Decimal("5000"), on_hand=10_000)
    now = timezone.now()
    orders = []
    for number in range(40):
        status = list(OrderStatus)[number % len(OrderStatus)]
        item, quantity = (cars, 12 + number) if number % 2 else (computers, 1 + number)
        decided = status in {OrderStatus.COMPLETED, OrderStatus.REJECTED} and number % 3 == 0
        orders.append(
            Order.objects.create(
                item=item,
                quantity=quantity,
                total_cost=item.unit_cost * quantity,
                status=status,
                approval_deadline=(
                    now + timedelta(seconds=20 + 7 * number)
                    if status == OrderStatus.AWAITING_APPROVAL
                    else None
                ),
                approved=(status == OrderStatus.COMPLETED) if decided else None,
                decided_by=manager if decided else None,
                decided_at=now if decided else None,
            )
        )
    return orders


def no_horizontal_scroll(page: Any, selector: str) -> tuple[int, int]:
    return page.evaluate(
        "s => { const e = document.querySelector(s); return [e.scrollWidth, e.clientWidth]; }",
        selector,
    )


def test_the_queue_fits_1280_and_every_desk_page_passes_axe(live_server, browser, no_engine):
    manager = User.objects.create_superuser("manager", password="pw-manager-123")
    orders = a_days_orders(manager)
    waiting = next(order for order in orders if order.status == OrderStatus.AWAITING_APPROVAL)
    admin = live_server.url + "/admin/"
    for width in WIDTHS:
        page = open_page(browser, width)
        log_in(page, admin + "login/?next=/admin/", "manager", "pw-manager-123")
        assert serious_violations(page) == [], f"index at {width}px"
        assert page.get_by_test_id("awaiting-count").inner_text() == "5 orders await approval"

        page.goto(admin + "orders/order/")
        assert page.locator("#result_list tbody tr").count() == 40
        assert serious_violations(page) == [], f"queue at {width}px"
        if width == 1280:
            assert page.evaluate("document.scrollingElement.scrollWidth") <= 1280
            scroll_width, client_width = no_horizontal_scroll(page, "#changelist .results")
            assert scroll_width <= client_width, "the queue's table scrolls sideways"
            screenshot(page, "admin-queue-1280.png")

        page.goto(admin + f"orders/order/{waiting.id}/change/")
        assert serious_violations(page) == [], f"order page at {width}px"
        page.get_by_role("button", name="Reject").click()
        page.get_by_test_id("decide-confirmation").wait_for()
        assert serious_violations(page) == [], f"confirmation at {width}px"
        page.context.close()


def test_manager_approves_on_the_order_page_with_the_keyboard_and_rejects_from_the_queue(
    live_server, workflow_engine, browser, settings
):
    settings.ZIPKIN_UI_URL = "http://127.0.0.1:9411"
    cars = InventoryItem.objects.create(name="Cars", unit_cost=Decimal("5000"), on_hand=30)
    manager = User.objects.create_user("manager", password="pw-manager-123", is_staff=True)
    manager.user_permissions.add(
        *Permission.objects.filter(codename__in=["approve_order", "view_order", "change_order"])
    )
    placed = [order_place(item_id=cars.pk, quantity=12) for _ in range(2)]
    for order in placed:
        wait_until(
            lambda o=order: Order.objects.get(pk=o.id).status == OrderStatus.AWAITING_APPROVAL
        )
    # The workflows ask for approval in whichever order the engine runs them: the one whose
    # window closes first is the most urgent.
    approve_me, reject_me = Order.objects.filter(pk__in=[o.id for o in placed]).order_by(
        "approval_deadline"
    )
    page = open_page(browser, 1280)
    log_in(page, live_server.url + "/admin/login/?next=/admin/", "manager", "pw-manager-123")
    assert page.get_by_test_id("awaiting-count").inner_text() == "2 orders await approval"
    screenshot(page, "admin-index-1280.png")

    # The most urgent order is one click away.
    page.get_by_test_id("most-urgent").get_by_role("link").first.click()
    assert page.url.endswith(f"/admin/orders/order/{approve_me.id}/change/")
    assert "left" in page.get_by_test_id("decision").inner_text()
    page.get_by_role("button", name="Approve").focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("button", name="Yes, approve this order")
    assert (
        "Are you sure you want to approve order"
        in page.get_by_test_id("decide-confirmation").inner_text()
    )
    confirm.focus()
    page.keyboard.press("Enter")
    page.locator(".messagelist").filter(has_text=f"Order {approve_me.id} approved.").wait_for()
    assert workflow_engine.wait_for_completion(approve_me.id).status == OrderStatus.COMPLETED

    page.reload()
    decision = " ".join(page.get_by_test_id("decision").inner_text().split())
    assert decision.startswith("Manager's decision Approved by manager on")
    history = page.get_by_test_id("engine-history").inner_text()
    assert "Event received\tmanager_approval" in history
    assert "Workflow completed" in history
    trace = page.get_by_test_id("trace-link")
    assert "annotationQuery=durabletask.task.instance_id%3D" + approve_me.id in (
        trace.get_attribute("href") or ""
    )
    screenshot(page, "admin-order-1280.png")
    page.set_viewport_size({"width": 375, "height": 900})
    screenshot(page, "admin-order-375.png")

    page.goto(live_server.url + "/admin/orders/order/")
    row = page.locator("#result_list tbody tr", has_text=reject_me.id)
    row.get_by_role("checkbox").check()
    page.get_by_role("combobox", name="Action").select_option(label="Reject selected orders")
    page.get_by_role("button", name="Go").click()
    page.locator(".messagelist").filter(has_text="1 order rejected.").wait_for()
    assert workflow_engine.wait_for_completion(reject_me.id).status == OrderStatus.REJECTED
    assert stock(cars) == (18, 0, 12)

    page.goto(live_server.url + "/admin/")
    assert page.get_by_test_id("awaiting-count").inner_text() == "No orders await approval."
    today = page.get_by_test_id("today-by-status").inner_text()
    assert "Completed 1" in today and "Rejected 1" in today
    page.set_viewport_size({"width": 375, "height": 900})
    screenshot(page, "admin-index-375.png")
    page.context.close()
