"""Stock: reserve an order's units, release them, sell them; restock; the seed inventory."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F

from orders.exceptions import InvalidQuantity, InventoryUpdateFailed, UnknownItem
from orders.models import MAX_UNITS, InventoryItem, LedgerEntry, LedgerStep, Order
from orders.services.ledger import ledger_entry, locked_order


@dataclass(frozen=True)
class Reservation:
    success: bool
    available: int


def inventory_reserve(*, order_id: str) -> Reservation:
    """Hold the order's units (once). ``available`` is what was free before this reservation."""
    with transaction.atomic():
        order = locked_order(order_id)
        done = ledger_entry(order, LedgerStep.RESERVE)
        if done is not None:
            return Reservation(success=True, available=order.item.on_hand + done.quantity)
        if order.is_final:
            return Reservation(success=False, available=order.item.on_hand)
        available = InventoryItem.objects.get(pk=order.item_id).on_hand
        taken = InventoryItem.objects.filter(pk=order.item_id, on_hand__gte=order.quantity).update(
            on_hand=F("on_hand") - order.quantity, reserved=F("reserved") + order.quantity
        )
        if not taken:
            return Reservation(success=False, available=available)
        LedgerEntry.objects.create(
            order=order, step=LedgerStep.RESERVE, item_id=order.item_id, quantity=order.quantity
        )
        return Reservation(success=True, available=available)


def inventory_release(*, order_id: str) -> bool:
    """Give the order's held units back (once); no-op unless they are still held."""
    with transaction.atomic():
        order = locked_order(order_id)
        return inventory_release_locked(order)


def inventory_release_locked(order: Order) -> bool:
    """``inventory_release`` for a caller that already holds the order's lock."""
    reserved = ledger_entry(order, LedgerStep.RESERVE)
    if (
        reserved is None
        or ledger_entry(order, LedgerStep.RELEASE)
        or ledger_entry(order, LedgerStep.DEDUCT)
    ):
        return False
    InventoryItem.objects.filter(pk=reserved.item_id).update(
        on_hand=F("on_hand") + reserved.quantity, reserved=F("reserved") - reserved.quantity
    )
    LedgerEntry.objects.create(
        order=order, step=LedgerStep.RELEASE, item_id=reserved.item_id, quantity=reserved.quantity
    )
    return True


def inventory_deduct(*, order_id: str) -> int:
    """Turn the order's reservation into a sale (once); returns the units left in stock."""
    with transaction.atomic():
        order = locked_order(order_id)
        if ledger_entry(order, LedgerStep.DEDUCT) is None:
            if order.is_final:  # cancelled (or closed) while the workflow ran: nothing ships
                raise InventoryUpdateFailed(
                    f"Order {order.id} is {order.get_status_display().lower()}."
                )
            reserved = ledger_entry(order, LedgerStep.RESERVE)
            if reserved is None or ledger_entry(order, LedgerStep.RELEASE) is not None:
                raise InventoryUpdateFailed(f"Order {order.id} holds no reserved stock.")
            moved = InventoryItem.objects.filter(
                pk=reserved.item_id, reserved__gte=reserved.quantity
            ).update(reserved=F("reserved") - reserved.quantity, sold=F("sold") + reserved.quantity)
            if not moved:
                raise InventoryUpdateFailed(f"Stock of {order.item.name} is inconsistent.")
            LedgerEntry.objects.create(
                order=order,
                step=LedgerStep.DEDUCT,
                item_id=reserved.item_id,
                quantity=reserved.quantity,
            )
        return InventoryItem.objects.get(pk=order.item_id).in_stock


def inventory_restock(*, item_id: int, quantity: int) -> InventoryItem:
    """Add ``quantity`` units to the item's free stock, keeping every unit it has ever held
    (free, reserved, sold) within ``MAX_UNITS``, so that no later movement can overflow."""
    if (
        isinstance(quantity, bool)
        or not isinstance(quantity, int)
        or not 1 <= quantity <= MAX_UNITS
    ):
        raise InvalidQuantity(f"Restock by a whole number from 1 to {MAX_UNITS}.")
    updated = (
        InventoryItem.objects.filter(pk=item_id)
        .alias(units=F("on_hand") + F("reserved") + F("sold"))
        .filter(units__lte=MAX_UNITS - quantity)
        .update(on_hand=F("on_hand") + quantity)
    )
    item = InventoryItem.objects.filter(pk=item_id).first()
    if item is None:
        raise UnknownItem("That item is not in the inventory.")
    if not updated:
        raise InvalidQuantity(
            f"{item.name} cannot hold {quantity} more units: free, reserved and sold units"
            f" together must not exceed {MAX_UNITS}."
        )
    return item


SEED_INVENTORY: tuple[tuple[str, Decimal, int], ...] = (
    ("Paperclip", Decimal("5"), 100),
    ("Cars", Decimal("5000"), 10),
    ("Computers", Decimal("500"), 100),
)


def inventory_seed() -> list[InventoryItem]:
    """Create the quickstart's inventory items that do not exist yet; returns those created."""
    created = []
    with transaction.atomic():
        for name, unit_cost, on_hand in SEED_INVENTORY:
            item, was_created = InventoryItem.objects.get_or_create(
                name=name, defaults={"unit_cost": unit_cost, "on_hand": on_hand}
            )
            if was_created:
                created.append(item)
    return created
