"""The order lock and the ledger lookup every order-level service starts from."""

from __future__ import annotations

from orders.exceptions import OrderNotFound
from orders.models import LedgerEntry, LedgerStep, Order


def locked_order(order_id: str) -> Order:
    """The order, its row locked until the enclosing transaction ends."""
    try:
        return Order.objects.select_for_update().select_related("item").get(pk=order_id)
    except Order.DoesNotExist:
        raise OrderNotFound(f"There is no order {order_id}.") from None


def ledger_entry(order: Order, step: LedgerStep) -> LedgerEntry | None:
    """The record that ``step``'s effect happened for ``order``; None while it has not."""
    return LedgerEntry.objects.filter(order=order, step=step).first()
