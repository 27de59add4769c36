"""Stock: reserve, release, sell, restock, seed; concurrent orders never oversell."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from orders.exceptions import InvalidQuantity, InventoryUpdateFailed, UnknownItem
from orders.models import MAX_UNITS, InventoryItem, LedgerEntry
from orders.services.inventory import (
    inventory_deduct,
    inventory_release,
    inventory_reserve,
    inventory_restock,
    inventory_seed,
)
from orders.services.orders import order_place
from orders.tests.conftest import stock


class TestStockMovements:
    def test_reserve_moves_units_and_is_idempotent(self, cars):
        order = order_place(item_id=cars.pk, quantity=2)
        first = inventory_reserve(order_id=order.id)
        second = inventory_reserve(order_id=order.id)
        assert first.success and second.success
        assert first.available == second.available == 10
        assert stock(cars) == (8, 2, 0)
        assert LedgerEntry.objects.filter(order=order).count() == 1

    def test_reserve_insufficient_changes_nothing(self, cars):
        order = order_place(item_id=cars.pk, quantity=5)
        InventoryItem.objects.filter(pk=cars.pk).update(on_hand=4)
        result = inventory_reserve(order_id=order.id)
        assert not result.success
        assert result.available == 4
        assert stock(cars) == (4, 0, 0)
        assert not LedgerEntry.objects.exists()

    def test_release_gives_units_back_once(self, cars):
        order = order_place(item_id=cars.pk, quantity=3)
        inventory_reserve(order_id=order.id)
        assert inventory_release(order_id=order.id) is True
        assert inventory_release(order_id=order.id) is False
        assert stock(cars) == (10, 0, 0)

    def test_deduct_sells_reserved_units_once(self, cars):
        order = order_place(item_id=cars.pk, quantity=3)
        inventory_reserve(order_id=order.id)
        assert inventory_deduct(order_id=order.id) == 7
        assert inventory_deduct(order_id=order.id) == 7
        assert stock(cars) == (7, 0, 3)
        # Sold units are not released by a late failure path.
        assert inventory_release(order_id=order.id) is False
        assert stock(cars) == (7, 0, 3)

    def test_deduct_without_reservation_fails(self, cars):
        order = order_place(item_id=cars.pk, quantity=3)
        with pytest.raises(InventoryUpdateFailed):
            inventory_deduct(order_id=order.id)
        assert stock(cars) == (10, 0, 0)

    def test_restock_adds_units(self, cars):
        inventory_restock(item_id=cars.pk, quantity=5)
        assert stock(cars) == (15, 0, 0)
        with pytest.raises(InvalidQuantity):
            inventory_restock(item_id=cars.pk, quantity=0)
        with pytest.raises(UnknownItem):
            inventory_restock(item_id=cars.pk + 99, quantity=1)

    @pytest.mark.parametrize("quantity", [MAX_UNITS - 9, 10**30])
    def test_restock_beyond_what_a_column_holds_changes_nothing(self, cars, quantity):
        with pytest.raises(InvalidQuantity):
            inventory_restock(item_id=cars.pk, quantity=quantity)
        assert stock(cars) == (10, 0, 0)
        inventory_restock(item_id=cars.pk, quantity=MAX_UNITS - 10)
        assert stock(cars) == (MAX_UNITS, 0, 0)


class TestSeed:
    def test_inventory_seed_once(self, db):
        assert [i.name for i in inventory_seed()] == ["Paperclip", "Cars", "Computers"]
        assert inventory_seed() == []
        assert InventoryItem.objects.get(name="Cars").unit_cost == Decimal("5000")


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_oversell():
    """Twelve orders race for the last five units: exactly five get one each."""
    item = InventoryItem.objects.create(name="Last units", unit_cost=Decimal("1"), on_hand=5)
    orders = [order_place(item_id=item.pk, quantity=1) for _ in range(12)]
    # Placing checked stock only as a hint; the reservation is the real gate.
    barrier = threading.Barrier(len(orders))
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def reserve(order_id: str) -> None:
        try:
            barrier.wait()
            results[order_id] = inventory_reserve(order_id=order_id).success
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=reserve, args=(o.id,)) for o in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(results.values()) == 5
    assert stock(item) == (0, 5, 0)
    assert LedgerEntry.objects.filter(step="reserve").count() == 5
