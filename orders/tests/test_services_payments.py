"""Payments: taken once, refunded once, never refunded once the goods have left."""

from __future__ import annotations

from decimal import Decimal

from orders.models import LedgerEntry
from orders.services.inventory import inventory_reserve
from orders.services.orders import order_place
from orders.services.payments import payment_process, payment_refund
from orders.tests.conftest import paid_order, stock


class TestPayments:
    def test_payment_and_refund_once_each(self, cars):
        order = order_place(item_id=cars.pk, quantity=2)
        inventory_reserve(order_id=order.id)
        assert payment_process(order_id=order.id) == Decimal("10000")
        payment_process(order_id=order.id)
        assert payment_refund(order_id=order.id) is True
        assert payment_refund(order_id=order.id) is False
        steps = sorted(LedgerEntry.objects.filter(order=order).values_list("step", flat=True))
        assert steps == ["payment", "refund", "release", "reserve"]
        assert stock(cars) == (10, 0, 0)

    def test_no_refund_once_the_goods_have_left(self, cars):
        # The inventory step committed although its caller saw an error: the workflow's failure
        # path then asks for a refund, which must not happen for goods that shipped.
        order = paid_order(cars, shipped=True)
        assert payment_refund(order_id=order.id) is False
        assert not LedgerEntry.objects.filter(order=order, step="refund").exists()
        assert stock(cars) == (6, 0, 4)
