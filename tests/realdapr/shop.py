"""What a customer and a manager do on the site (through a real browser), and what the shop's
database says afterwards (read-only, straight from the app's SQLite file).

The tests that use these run the app in other processes, so the database is read with sqlite3
rather than through this process's Django, whose settings point at a test database.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CUSTOMER = ("customer", "daprd-Customer-4b1e7d")
MANAGER = ("manager", "daprd-Manager-9c2f5a")
ORDER_URL = re.compile(r"/orders/([0-9a-f]{32})/$")
FINAL = {"completed", "insufficient_stock", "rejected", "cancelled", "failed"}
# The ledger an order leaves behind, by the status it ended in.
LEDGER_BY_STATUS = {
    "completed": {"reserve", "payment", "deduct"},
    "rejected": {"reserve", "release"},
    "cancelled": {"reserve", "release"},
    "insufficient_stock": set(),
}


# --- the browser ------------------------------------------------------------------------------


def log_in_if_asked(page: Any, account: tuple[str, str]) -> None:
    """Fill in the login form when the page shows one (the shop's or the admin's)."""
    if page.locator("input[name=password]").count() == 0:
        return
    username, password = account
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    if page.locator("input[name=password]").count():
        raise AssertionError(f"{username} could not log in at {page.url}")


def choose_item(page: Any, name: str) -> None:
    """Pick ``name`` on the order form: an item card (a radio button) or the item list."""
    card = page.get_by_role("radio", name=re.compile(rf"^{re.escape(name)}\b"))
    if card.count():
        card.first.check()
        return
    select = page.get_by_label("Item")
    option = select.locator("option", has_text=re.compile(rf"^{re.escape(name)}\b")).first
    select.select_option(value=option.get_attribute("value"))


def place_order(page: Any, site: str, item: str, quantity: int) -> str:
    """Order on the order form as the customer; returns the order id from the page it opens."""
    page.goto(site + "/")
    log_in_if_asked(page, CUSTOMER)
    if not page.url.rstrip("/").endswith(site.rstrip("/")):
        page.goto(site + "/")
    choose_item(page, item)
    page.get_by_label("Quantity").fill(str(quantity))
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url(ORDER_URL)
    match = ORDER_URL.search(page.url)
    assert match is not None
    return match.group(1)


def wait_for_status(page: Any, text: str, timeout_s: float = 120) -> None:
    """The order page's status reads ``text`` (it updates itself while the order runs)."""
    page.get_by_test_id("status").filter(has_text=text).wait_for(timeout=timeout_s * 1000)


def manager_decides(page: Any, site: str, order_id: str, action: str, done: str) -> None:
    """In the admin's order list, run ``action`` on the order; wait for ``done`` reported."""
    page.goto(site + "/admin/orders/order/")
    log_in_if_asked(page, MANAGER)
    row = page.locator("#result_list tbody tr", has_text=order_id)
    row.get_by_role("checkbox").check()
    page.get_by_role("combobox", name="Action").select_option(label=action)
    page.get_by_role("button", name="Go").click()
    page.locator(".messagelist").filter(has_text=done).wait_for()


# --- the database -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stock:
    on_hand: int
    reserved: int
    sold: int

    @property
    def units(self) -> int:
        return self.on_hand + self.reserved + self.sold


class ShopDatabase:
    """Reads of the app's SQLite database, each on a fresh read-only connection."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def status(self, order_id: str) -> str:
        found = self.rows("SELECT status FROM orders_order WHERE id = ?", order_id)
        return found[0]["status"] if found else ""

    def statuses(self, order_ids: list[str]) -> dict[str, str]:
        return {order_id: self.status(order_id) for order_id in order_ids}

    def all_final(self, order_ids: list[str]) -> bool:
        return all(status in FINAL for status in self.statuses(order_ids).values())

    def deadline_passed(self, order_id: str) -> bool:
        """The order's approval deadline (stored in UTC) is in the past."""
        found = self.rows("SELECT approval_deadline FROM orders_order WHERE id = ?", order_id)
        if not found or found[0]["approval_deadline"] is None:
            return False
        deadline = datetime.fromisoformat(found[0]["approval_deadline"]).replace(tzinfo=UTC)
        return deadline < datetime.now(UTC)

    def decided_by(self, order_id: str) -> str | None:
        found = self.rows(
            "SELECT u.username FROM orders_order o JOIN auth_user u ON u.id = o.decided_by_id "
            "WHERE o.id = ?",
            order_id,
        )
        return found[0]["username"] if found else None

    def stock(self) -> dict[str, Stock]:
        return {
            row["name"]: Stock(row["on_hand"], row["reserved"], row["sold"])
            for row in self.rows("SELECT name, on_hand, reserved, sold FROM orders_inventoryitem")
        }

    def ledger(self, order_id: str) -> dict[str, int]:
        rows = self.rows(
            "SELECT step, quantity FROM orders_ledgerentry WHERE order_id = ?", order_id
        )
        return {row["step"]: row["quantity"] for row in rows}

    def check_books(self, seed_units: dict[str, int], order_ids: list[str]) -> None:
        """The books agree. Every item holds the units the seed gave it (on hand + reserved +
        sold); what is reserved and sold is what the ledger says every order reserved,
        released and sold; and each of ``order_ids`` is final, with the ledger its ending
        calls for, in its own quantity."""
        stock = self.stock()
        assert {name: s.units for name, s in stock.items()} == seed_units
        moved: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in self.rows(
            "SELECT i.name, l.step, SUM(l.quantity) AS units FROM orders_ledgerentry l "
            "JOIN orders_inventoryitem i ON i.id = l.item_id GROUP BY i.name, l.step"
        ):
            moved[row["name"]][row["step"]] = row["units"]
        for name, s in stock.items():
            held = moved[name]["reserve"] - moved[name]["release"] - moved[name]["deduct"]
            assert (s.reserved, s.sold) == (held, moved[name]["deduct"]), name
        for order_id in order_ids:
            order = self.rows("SELECT status, quantity FROM orders_order WHERE id = ?", order_id)[0]
            assert order["status"] in FINAL, (order_id, order["status"])
            ledger = self.ledger(order_id)
            assert set(ledger) == LEDGER_BY_STATUS[order["status"]], (order_id, ledger)
            for step in ("reserve", "release", "deduct"):
                if step in ledger:
                    assert ledger[step] == order["quantity"], (order_id, step, ledger)
