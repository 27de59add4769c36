"""Payments: take an order's payment, refund it. A real gateway call would carry (order id, step)
as its idempotency key; here the ledger row is the payment."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from orders.exceptions import PaymentFailed
from orders.models import LedgerEntry, LedgerStep, Order
from orders.services.inventory import inventory_release_locked
from orders.services.ledger import ledger_entry, locked_order


def payment_process(*, order_id: str) -> Decimal:
    """Take the order's payment (once)."""
    with transaction.atomic():
        order = locked_order(order_id)
        paid = ledger_entry(order, LedgerStep.PAYMENT)
        if paid is not None:
            return paid.amount
        if order.is_final:
            raise PaymentFailed(f"Order {order.id} is {order.get_status_display().lower()}.")
        LedgerEntry.objects.create(
            order=order, step=LedgerStep.PAYMENT, item_id=order.item_id, amount=order.total_cost
        )
        return order.total_cost


def payment_refund(*, order_id: str) -> bool:
    """Refund the order's payment (once) and release its reservation; no-op if nothing was paid."""
    with transaction.atomic():
        order = locked_order(order_id)
        refunded = payment_refund_locked(order)
        inventory_release_locked(order)
        return refunded


def payment_refund_locked(order: Order) -> bool:
    """Refund the payment (once) for a caller that already holds the order's lock."""
    paid = ledger_entry(order, LedgerStep.PAYMENT)
    if paid is None or ledger_entry(order, LedgerStep.REFUND) is not None:
        return False
    if ledger_entry(order, LedgerStep.DEDUCT) is not None:
        # The goods have left: a failure path that runs after that (an inventory step whose
        # commit succeeded although its caller saw an error) must not give the money back too.
        return False
    LedgerEntry.objects.create(
        order=order, step=LedgerStep.REFUND, item_id=paid.item_id, amount=paid.amount
    )
    return True
