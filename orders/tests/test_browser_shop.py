"""The shop as its customers use it, in a real browser (Debian's chromium through Playwright) at a
phone's width (375 px) and a laptop's (1280 px), against the live site and a real engine.

One browser and one engine serve the whole module. Every page visited is checked with axe-core
(bundled by axe-playwright-python, injected from the package: nothing is fetched): no serious or
critical violation. With SCREENSHOTS=1 the tests also save the pages to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from orders.exceptions import PaymentFailed
from orders.models import InventoryItem, Order, OrderStatus
from orders.services.approvals import order_approve, order_reject
from orders.services.orders import order_place
from orders.tests.conftest import WorkflowEngine, engine_running, stock, wait_until
from orders.tests.test_browser import CHROMIUM, CHROMIUM_ARGS
from orders.workflows import activities

pytestmark = pytest.mark.browser

WIDTHS = (375, 1280)
SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"
PASSWORD = "pw-shop-4821-x"
TOOK = re.compile(r"^\d+ ms$|^\d+\.\d s$|^\d+ min \d\d s$")


# --- one browser and one engine for the module ------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is required (make browser)"
    # Playwright's sync API keeps an event loop on this thread; our ORM calls here are plain
    # synchronous test code, not coroutines.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()


@pytest.fixture(scope="module")
def engine(django_db_setup: None, tmp_path_factory: Any) -> Iterator[WorkflowEngine]:
    with engine_running(str(tmp_path_factory.mktemp("engine") / "workflows.db")) as engine:
        yield engine


@pytest.fixture
def shop(live_server: Any, engine: WorkflowEngine) -> dict[str, Any]:
    """The seed inventory (more cars, for orders over the threshold) and two customers."""
    return {
        "url": live_server.url,
        "cars": InventoryItem.objects.create(name="Cars", unit_cost=Decimal(5000), on_hand=40),
        "clips": InventoryItem.objects.create(name="Paperclip", unit_cost=Decimal(5), on_hand=100),
        "alice": User.objects.create_user("alice", password=PASSWORD),
        "bob": User.objects.create_user("bob", password=PASSWORD),
    }


def open_page(browser: Any, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    # No network at run time: anything but the live server is a failure.
    page.route(re.compile(r"^https?://(?!localhost|127\.0\.0\.1)"), lambda route: route.abort())
    return page


@pytest.fixture(params=WIDTHS, ids=lambda width: f"{width}px")
def page(request: Any, browser: Any) -> Iterator[Any]:
    page = open_page(browser, request.param)
    try:
        yield page
    finally:
        page.context.close()


# --- what every page is held to -----------------------------------------------------------------


def check_page(page: Any, screenshot: str | None = None) -> None:
    """No serious or critical axe-core violation, no horizontal scrolling; and, with
    SCREENSHOTS=1, the page saved as docs/screenshots/<screenshot>-<width>.png."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    serious = [
        violation
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert not serious, f"{page.url}: {results.generate_report()}"
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{page.url} scrolls"
    if screenshot and os.environ.get("SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{screenshot}-{width}.png"), full_page=True)


def log_in(page: Any, url: str, username: str) -> None:
    page.goto(url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Place an order").wait_for()


def place(page: Any, item: str, quantity: int) -> str:
    """Order on the form, as a customer does; returns the order's id."""
    page.get_by_role("radio", name=re.compile(f"^{item}")).check()
    page.get_by_label("Quantity").fill(str(quantity))
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url(re.compile(r"/orders/[0-9a-f]{32}/$"))
    return page.url.rstrip("/").rsplit("/", 1)[-1]


def steps(page: Any) -> list[tuple[str, str, str]]:
    """(label, how long it took, note) of each step on the order page."""
    return page.get_by_test_id("step").evaluate_all(
        """items => items.map(step => [
            step.querySelector('.step-label').textContent.trim(),
            step.querySelector('.step-duration')?.textContent.trim() ?? '',
            step.querySelector('.step-note')?.textContent.trim() ?? '',
        ])"""
    )


def assert_steps(page: Any, expected: list[tuple[str, str]]) -> None:
    """The page lists exactly these (label, note) steps, each with its duration."""
    shown = steps(page)
    assert [(label, note) for label, _, note in shown] == expected
    for label, took, _ in shown:
        assert TOOK.match(took), f"{label}: {took!r}"


# --- the tests ----------------------------------------------------------------------------------


def test_visitor_is_sent_to_log_in_signs_up_and_uses_the_keyboard(shop, page):
    page.goto(shop["url"] + "/")
    page.wait_for_url(re.compile(r"/accounts/login/\?next=/$"))
    page.get_by_role("button", name="Log in").wait_for()
    check_page(page, "login")

    page.get_by_role("link", name="Create an account").click()
    page.get_by_role("heading", name="Create an account").wait_for()
    check_page(page, "signup")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.get_by_role("heading", name="Place an order").wait_for()
    assert not User.objects.get(username="carol").is_staff

    # Out, and back in with the keyboard alone: every control it reaches shows its focus.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    for _ in range(12):
        page.keyboard.press("Tab")
        focus = page.evaluate(
            """() => { const e = document.activeElement, s = getComputedStyle(e);
                return {id: e.id, tag: e.tagName, outline: s.outlineStyle !== 'none' && s.outlineWidth !== '0px'}; }"""
        )
        if focus["tag"] == "BODY":  # the document itself, before the first control
            continue
        assert focus["outline"], focus
        if focus["id"] == "id_username":
            break
    page.keyboard.type("carol")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Place an order").wait_for()


def test_customer_orders_and_sees_only_their_own(shop, page, browser):
    bobs = order_place(item_id=shop["clips"].pk, quantity=1, placed_by=shop["bob"])
    log_in(page, shop["url"], "alice")
    check_page(page)

    # The total follows the choice; over the threshold, a note says a manager must approve.
    page.get_by_role("radio", name=re.compile("^Cars")).check()
    page.get_by_label("Quantity").fill("11")
    page.get_by_test_id("quote-total").filter(has_text="$55,000.00").wait_for()
    note = page.get_by_test_id("approval-note")
    assert "Over $50,000.00: a manager must approve" in note.inner_text()
    check_page(page, "order-form")
    page.get_by_label("Quantity").fill("41")
    page.get_by_text("Only 40 Cars in stock; order fewer.").wait_for()

    order_id = place(page, "Paperclip", 3)
    # Mark the document: a full reload would drop this property.
    page.evaluate("window.__noReload = true")
    page.get_by_test_id("status").filter(has_text="Completed").wait_for()
    assert page.evaluate("window.__noReload") is True
    assert page.get_by_test_id("total").inner_text() == "$15.00"
    assert_steps(
        page,
        [
            ("Received", ""),
            ("Stock reserved", "3 held"),
            ("Paid", "$15.00"),
            ("Inventory updated", "3 sold"),
            ("Completed", ""),
        ],
    )
    check_page(page, "order-completed")
    assert Order.objects.get(pk=order_id).placed_by == shop["alice"]

    page.get_by_role("link", name="My orders").click()
    page.get_by_role("heading", name="Your orders").wait_for()
    assert page.get_by_role("link", name=order_id).is_visible()
    assert page.get_by_role("link", name=bobs.id).count() == 0
    check_page(page, "orders")

    # Bob cannot open Alice's order, neither the page nor its live fragment.
    other = open_page(browser, page.viewport_size["width"])
    try:
        log_in(other, shop["url"], "bob")
        response = other.goto(f"{shop['url']}/orders/{order_id}/")
        assert response.status == 404
        fragment = other.request.get(
            f"{shop['url']}/orders/{order_id}/", headers={"HX-Request": "true"}
        )
        assert fragment.status == 404
    finally:
        other.context.close()


def test_countdown_moves_and_the_customer_cancels_a_waiting_order(shop, page, settings):
    settings.ORDER_APPROVAL_THRESHOLD = Decimal(10000)
    cars = shop["cars"]
    log_in(page, shop["url"], "alice")
    page.get_by_role("radio", name=re.compile("^Cars")).check()
    page.get_by_label("Quantity").fill("3")
    page.get_by_test_id("approval-note").filter(has_text="Over $10,000.00").wait_for()
    order_id = place(page, "Cars", 3)

    page.get_by_test_id("status").filter(has_text="Awaiting approval").wait_for()
    time_left = page.get_by_test_id("time-left")
    first = time_left.inner_text()
    assert re.fullmatch(r"3 min \d\d s", first)
    page.wait_for_function(
        "first => document.querySelector('[data-testid=time-left]').textContent !== first",
        arg=first,
    )
    assert stock(cars) == (37, 3, 0)
    check_page(page, "order-awaiting")

    page.get_by_role("button", name="Cancel order").click()
    page.get_by_text("Your order is cancelled and its stock returned.").wait_for()
    assert page.get_by_test_id("status").inner_text() == "Cancelled"
    assert page.get_by_test_id("time-left").count() == 0
    assert steps(page)[-1][0] == "Cancelled"
    assert steps(page)[-1][2] == "Cancelled by alice. 3 Cars returned to stock."
    assert Order.objects.get(pk=order_id).status == OrderStatus.CANCELLED
    assert stock(cars) == (40, 0, 0)
    check_page(page)


def test_order_page_shows_each_step_for_every_outcome(shop, browser, engine, settings):
    """A small order, a large approved one, a rejected one, a timed-out one and a failed one:
    each page lists the workflow's steps with their durations, and where and why it stopped."""
    cars, clips, alice = shop["cars"], shop["clips"], shop["alice"]
    manager = User.objects.create_superuser("boss", password=PASSWORD)

    # A declined card: the payment activity fails, as test_workflows_order_processing does it.
    def declined(*, order_id: str) -> None:
        raise PaymentFailed("card declined")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(activities, "payment_process", declined)
        failed = order_place(item_id=clips.pk, quantity=3, placed_by=alice)
        engine.wait_for_completion(failed.id)

    small = order_place(item_id=clips.pk, quantity=2, placed_by=alice)
    settings.ORDER_APPROVAL_TIMEOUT = 1  # travels in this order's workflow input only
    timed_out = order_place(item_id=cars.pk, quantity=13, placed_by=alice)
    settings.ORDER_APPROVAL_TIMEOUT = 200
    approved = order_place(item_id=cars.pk, quantity=11, placed_by=alice)
    rejected = order_place(item_id=cars.pk, quantity=12, placed_by=alice)
    for order in (approved, rejected):
        wait_until(lambda o=order: Order.objects.get(pk=o.pk).status == "awaiting_approval")
    order_approve(order_id=approved.id, user=manager)
    order_reject(order_id=rejected.id, user=manager)
    for order in (small, timed_out, approved, rejected):
        engine.wait_for_completion(order.id)

    reserved = [("Received", ""), ("Stock reserved", "{} held")]
    cases = {
        "order-small": (
            small,
            "Completed",
            [("Paid", "$10.00"), ("Inventory updated", "2 sold"), ("Completed", "")],
        ),
        "order-approved": (
            approved,
            "Completed",
            [
                ("Approved", "by boss"),
                ("Paid", "$55,000.00"),
                ("Inventory updated", "11 sold"),
                ("Completed", ""),
            ],
        ),
        "order-rejected": (
            rejected,
            "Rejected",
            [("Rejected", "Rejected by boss. 12 Cars returned to stock.")],
        ),
        "order-timed-out": (
            timed_out,
            "Cancelled",
            [
                (
                    "Timed out",
                    "No manager decided before the approval window closed. "
                    "13 Cars returned to stock.",
                )
            ],
        ),
        "order-failed": (
            failed,
            "Failed",
            [("Payment failed", "Card declined. 3 Paperclip returned to stock.")],
        ),
    }
    for width in WIDTHS:
        page = open_page(browser, width)
        try:
            log_in(page, shop["url"], "alice")
            for name, (order, status, rest) in cases.items():
                page.goto(f"{shop['url']}/orders/{order.id}/")
                assert page.get_by_test_id("status").inner_text() == status
                expected = [(label, note.format(order.quantity)) for label, note in reserved]
                assert_steps(page, expected + rest)
                check_page(page, None if name == "order-small" else name)
            # The timed-out order waited its second for a manager; the page says so.
            page.goto(f"{shop['url']}/orders/{timed_out.id}/")
            waited = steps(page)[2][1]
            assert re.fullmatch(r"\d+\.\d s", waited) and float(waited[:-2]) >= 1.0, waited
        finally:
            page.context.close()
    assert stock(cars) == (29, 0, 11)
    assert stock(clips) == (98, 0, 2)
