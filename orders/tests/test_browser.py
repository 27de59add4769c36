"""A real browser (Debian's chromium through Playwright) against the live site and real engine."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User

from orders.models import InventoryItem, Order, OrderStatus
from orders.tests.conftest import stock

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; our ORM calls here are plain
    # synchronous test code, not coroutines.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    assert os.path.exists(CHROMIUM), "Debian's chromium is required (make browser)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(30_000)
        # No network at run time: anything but the live server is a failure.
        page.route(re.compile(r"^https?://(?!localhost|127\.0\.0\.1)"), lambda route: route.abort())
        try:
            yield page
        finally:
            context.close()
            browser.close()


def log_in_as_a_customer(page: Any, url: str) -> None:
    User.objects.create_user("alice", password="pw-alice-123")
    page.goto(url + "/")  # the order form needs a login: the login page, then back
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Place an order").wait_for()


def test_place_order_and_watch_it_complete_without_reload(live_server, workflow_engine, page):
    cars = InventoryItem.objects.create(name="Cars", unit_cost=Decimal("5000"), on_hand=10)
    log_in_as_a_customer(page, live_server.url)
    page.get_by_role("radio", name="Cars $5,000.00 each 10 in stock").check()
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url(re.compile(r"/orders/[0-9a-f]{32}/$"))
    # Mark the document: a full reload would drop this property.
    page.evaluate("window.__noReload = true")
    status = page.get_by_test_id("status")
    status.filter(has_text="Completed").wait_for()
    assert page.evaluate("window.__noReload") is True
    order = Order.objects.get()
    assert order.status == OrderStatus.COMPLETED
    assert page.get_by_test_id("steps").get_by_text("Completed").is_visible()
    assert stock(cars) == (8, 0, 2)


def test_manager_approves_large_order_in_admin(live_server, workflow_engine, page):
    cars = InventoryItem.objects.create(name="Cars", unit_cost=Decimal("5000"), on_hand=20)
    User.objects.create_superuser("boss", password="pw-boss-123")
    log_in_as_a_customer(page, live_server.url)
    page.get_by_role("radio", name="Cars $5,000.00 each 20 in stock").check()
    page.get_by_label("Quantity").fill("12")
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url(re.compile(r"/orders/[0-9a-f]{32}/$"))
    order_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    page.get_by_test_id("status").filter(has_text="Awaiting approval").wait_for()
    assert page.get_by_test_id("time-left").is_visible()
    order_page = page.url

    page.goto(live_server.url + "/admin/orders/order/")
    page.get_by_label("Username").fill("boss")
    page.get_by_label("Password").fill("pw-boss-123")
    page.get_by_role("button", name="Log in").click()
    row = page.locator("#result_list tbody tr", has_text=order_id)
    row.get_by_role("checkbox").check()
    page.get_by_role("combobox", name="Action").select_option(label="Approve selected orders")
    page.get_by_role("button", name="Go").click()
    page.locator(".messagelist").filter(has_text="1 order approved.").wait_for()

    page.goto(order_page)
    page.get_by_test_id("status").filter(has_text="Completed").wait_for()
    assert "Approved" in page.get_by_test_id("steps").inner_text()
    order = Order.objects.get(pk=order_id)
    assert order.decided_by.username == "boss"
    assert stock(cars) == (8, 0, 12)
