"""The app on real daprd, as dapr.yaml runs it: the worker and the web process, each next to its
own daprd, on Redis, placement and scheduler (private ones, on free ports; see app_run.py).

A customer orders in a real browser (Debian's chromium through Playwright) and a manager decides
in the admin: a small order completes live; a large one waits for approval and completes once
approved; a rejected one ends rejected; one nobody answers is cancelled when its approval timer
fires. Then the worker's daprd, and separately the worker, are killed with SIGKILL while orders
are in flight, and started again: every order reaches its final state, and the stock and the
ledger agree. Each test waits for what a user would see (the page, the database), never a
fixed time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .app_run import WORKER, AppRun, wait_for
from .processes import ControlPlane
from .shop import (
    CUSTOMER,
    FINAL,
    MANAGER,
    ShopDatabase,
    manager_decides,
    place_order,
    wait_for_status,
)

pytestmark = [pytest.mark.browser, pytest.mark.crash, pytest.mark.timeout(600)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[2]
# The seed's inventory; an order over $100 needs approval here: one computer ($500) does, a few
# paperclips ($5 each) do not.
SEED_UNITS = {"Paperclip": 100, "Cars": 10, "Computers": 100}
THRESHOLD = "100"
LONG_TIMEOUT = "900"  # seconds: no approval timer fires while a manager is deciding
SHORT_TIMEOUT = "8"


def shop_env(var_dir: Path, approval_timeout: str) -> dict[str, str]:
    """The environment `dapr run` would be started from (it passes it on to both apps)."""
    return {
        "ORDERS_VAR_DIR": str(var_dir),
        "ORDER_APPROVAL_THRESHOLD": THRESHOLD,
        "ORDER_APPROVAL_TIMEOUT": approval_timeout,
        # The sweep that schedules orders placed while the engine was away, and delivers
        # decisions made meanwhile, runs every 2 s rather than every 30.
        "ORDER_RESCHEDULE_INTERVAL": "2",
        "MANAGER_PASSWORD": MANAGER[1],
        "CUSTOMER_PASSWORD": CUSTOMER[1],
    }


class Shop:
    """One run of the app at a time (both runs use dapr.yaml's app ids, so two at once would
    share the workflow actors), on one database migrated and seeded once."""

    def __init__(self, plane: ControlPlane, root: Path) -> None:
        self.plane, self.root = plane, root
        self.var_dir = root / "var"
        self.db = ShopDatabase(self.var_dir / "orders.sqlite3")
        self.run: AppRun | None = None
        self.timeout = ""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("DAPR_") and key != "DATABASE_URL"
        }
        env |= shop_env(self.var_dir, LONG_TIMEOUT)
        for command in (["migrate", "--noinput"], ["seed"]):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )

    def running(self, approval_timeout: str) -> AppRun:
        if self.run is not None and self.timeout == approval_timeout:
            return self.run
        self.stop()
        self.run = AppRun(
            self.plane,
            self.root / f"run-{approval_timeout}",
            shop_env(self.var_dir, approval_timeout),
        ).start()
        self.timeout = approval_timeout
        return self.run

    def stop(self) -> None:
        if self.run is not None:
            self.run.stop()
            self.run = None


@pytest.fixture(scope="module")
def shop(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    shop = Shop(control_plane, tmp_path_factory.mktemp("dapr-app"))
    try:
        yield shop
    finally:
        shop.stop()


@pytest.fixture
def site(shop: Shop) -> AppRun:
    """The app running with an approval timeout no test waits for."""
    return shop.running(LONG_TIMEOUT)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is required (make browser)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def customer(browser: Any) -> Iterator[Any]:
    """A browser tab of the customer's (cookies of its own)."""
    yield from new_page(browser)


@pytest.fixture
def manager(browser: Any) -> Iterator[Any]:
    """A browser tab of the manager's, in the admin."""
    yield from new_page(browser)


def test_the_run_uses_no_port_dapr_yaml_fixes(site: AppRun) -> None:
    assert site.fixed_ports_left() == set()
    assert set(site.ports) >= {3510, 50010, 8000}  # what dapr.yaml fixes, all moved


def test_small_order_completes_live(site: AppRun, shop: Shop, customer: Any) -> None:
    order_id = place_order(customer, site.web_url, "Paperclip", 2)
    customer.evaluate("window.__noReload = true")  # a full reload would drop this
    wait_for_status(customer, "Completed")
    assert customer.evaluate("window.__noReload") is True
    assert shop.db.status(order_id) == "completed"
    shop.db.check_books(SEED_UNITS, [order_id])


def test_large_order_completes_once_the_manager_approves_it(
    site: AppRun, shop: Shop, customer: Any, manager: Any
) -> None:
    order_id = place_order(customer, site.web_url, "Computers", 1)
    wait_for_status(customer, "Awaiting approval")
    manager_decides(manager, site.web_url, order_id, "Approve selected orders", "1 order approved.")
    wait_for_status(customer, "Completed")
    assert shop.db.decided_by(order_id) == "manager"
    shop.db.check_books(SEED_UNITS, [order_id])


def test_rejected_order_ends_rejected_and_its_stock_comes_back(
    site: AppRun, shop: Shop, customer: Any, manager: Any
) -> None:
    before = shop.db.stock()["Computers"]
    order_id = place_order(customer, site.web_url, "Computers", 3)
    wait_for_status(customer, "Awaiting approval")
    manager_decides(manager, site.web_url, order_id, "Reject selected orders", "1 order rejected.")
    wait_for_status(customer, "Rejected")
    assert shop.db.stock()["Computers"] == before
    shop.db.check_books(SEED_UNITS, [order_id])


def place_orders_in_flight(site: AppRun, shop: Shop, customer: Any) -> tuple[list[str], list[str]]:
    """Three large orders waiting for a manager (each workflow parked on an event raced
    against a timer), then three small ones placed in a row."""
    large = [place_order(customer, site.web_url, "Computers", 1) for _ in range(3)]
    wait_for(
        "the large orders to await approval",
        lambda: all(shop.db.status(o) == "awaiting_approval" for o in large),
    )
    small = [place_order(customer, site.web_url, "Paperclip", n) for n in (1, 2, 3)]
    return large, small


def finish_and_check(
    site: AppRun, shop: Shop, manager: Any, large: list[str], completes: list[str]
) -> None:
    """The manager rejects the second large order and approves the third (the first was
    approved while something was down); then every order ends as it should, and the books
    agree."""
    manager_decides(manager, site.web_url, large[1], "Reject selected orders", "1 order rejected.")
    manager_decides(manager, site.web_url, large[2], "Approve selected orders", "1 order approved.")
    everything = [*large, *completes]
    wait_for("every order to reach a final state", lambda: shop.db.all_final(everything), 240)
    assert shop.db.statuses(everything) == {
        **dict.fromkeys([large[0], large[2], *completes], "completed"),
        large[1]: "rejected",
    }
    shop.db.check_books(SEED_UNITS, everything)


def test_orders_in_flight_finish_after_kill_9_of_the_workers_daprd(
    site: AppRun, shop: Shop, customer: Any, manager: Any
) -> None:
    large, small = place_orders_in_flight(site, shop, customer)
    site.sidecars[WORKER].process.kill()
    assert not any(shop.db.status(o) in FINAL for o in large)  # killed mid-workflow

    # While the engine is away an order is placed (saved; runworker's sweep schedules it) and
    # the manager approves a large order (recorded; the sweep delivers the decision).
    placed_meanwhile = place_order(customer, site.web_url, "Paperclip", 1)
    manager_decides(manager, site.web_url, large[0], "Approve selected orders", "1 order approved.")
    assert shop.db.status(placed_meanwhile) == "placed"
    assert shop.db.status(large[0]) == "awaiting_approval"

    site.sidecars[WORKER].start()  # the same ports, app id and state store
    site.wait_until_worker_connected()
    finish_and_check(site, shop, manager, large, [*small, placed_meanwhile])


def test_orders_in_flight_finish_after_kill_9_of_the_worker(
    site: AppRun, shop: Shop, customer: Any, manager: Any
) -> None:
    large, small = place_orders_in_flight(site, shop, customer)
    site.apps[WORKER].kill()  # runworker and its worker processes
    assert not any(shop.db.status(o) in FINAL for o in large)

    # With no worker connected daprd holds a new workflow or an event until the client's
    # deadline: the order page still opens at once and the decision is still recorded.
    placed_meanwhile = place_order(customer, site.web_url, "Paperclip", 1)
    manager_decides(manager, site.web_url, large[0], "Approve selected orders", "1 order approved.")
    assert shop.db.status(large[0]) == "awaiting_approval"

    site.apps[WORKER].start()
    site.wait_until_worker_connected()
    finish_and_check(site, shop, manager, large, [*small, placed_meanwhile])


def test_unanswered_order_is_cancelled_when_its_approval_times_out(
    shop: Shop, customer: Any
) -> None:
    site = shop.running(SHORT_TIMEOUT)  # a run of its own: the timeout travels in the input
    before = shop.db.stock()["Computers"]
    order_id = place_order(customer, site.web_url, "Computers", 2)
    wait_for_status(customer, "Awaiting approval")
    wait_for_status(customer, "Cancelled")
    assert shop.db.status(order_id) == "cancelled"
    assert shop.db.decided_by(order_id) is None
    assert shop.db.stock()["Computers"] == before
    shop.db.check_books(SEED_UNITS, [order_id])


def test_approval_timer_due_while_daprd_is_down_fires_after_its_restart(
    shop: Shop, customer: Any
) -> None:
    site = shop.running(SHORT_TIMEOUT)
    order_id = place_order(customer, site.web_url, "Computers", 1)
    wait_for_status(customer, "Awaiting approval")
    site.sidecars[WORKER].process.kill()
    wait_for("the approval deadline to pass", lambda: shop.db.deadline_passed(order_id), 60)
    assert shop.db.status(order_id) == "awaiting_approval"  # nothing fired it meanwhile

    site.sidecars[WORKER].start()
    wait_for_status(customer, "Cancelled")
    shop.db.check_books(SEED_UNITS, [order_id])
