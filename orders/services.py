"""Every write to the order domain. Views, admin actions, commands and activities call these.

Locking: each order-level service runs in one transaction that first locks the order row
(``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every write transaction is ``BEGIN
IMMEDIATE`` and so already serialised). Stock moves with conditional ``UPDATE`` statements, never
read-modify-write, so concurrent orders cannot oversell.

Idempotency: an effect is written together with its ``LedgerEntry`` (order, step) row; a service
that finds its row returns what was recorded and changes nothing, so an activity that runs twice
(at-least-once delivery) has one effect.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from orders import engine
from orders.exceptions import (
    ApprovalNotPermitted,
    ApprovalWindowClosed,
    EngineUnavailable,
    InvalidFormToken,
    InvalidQuantity,
    InventoryUpdateFailed,
    NotAwaitingApproval,
    NotEnoughStock,
    OrderNotCancellable,
    OrderNotFound,
    PaymentFailed,
    UnknownItem,
    WeakPassword,
)
from orders.models import (
    MAX_TOTAL,
    MAX_UNITS,
    InventoryItem,
    LedgerEntry,
    LedgerStep,
    Order,
    OrderEvent,
    OrderStatus,
    new_order_id,
)

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser

APPROVE_PERMISSION = "orders.approve_order"
CANCEL_PERMISSION = "orders.change_order"
FORM_TOKEN = re.compile(r"[0-9a-f]{32}")
FORM_ORDERS = uuid.UUID("5d0c3c4e-8f0b-4a57-9a55-6a1f2f6f1c11")  # namespace of form-placed ids


def amount_text(amount: Decimal) -> str:
    """5000.00 -> "5000", 12.50 -> "12.50": the quickstart prints whole dollars bare."""
    return f"{amount:.0f}" if amount == amount.to_integral_value() else f"{amount:.2f}"


def _locked_order(order_id: str) -> Order:
    try:
        return Order.objects.select_for_update().select_related("item").get(pk=order_id)
    except Order.DoesNotExist:
        raise OrderNotFound(f"There is no order {order_id}.") from None


def _entry(order: Order, step: LedgerStep) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(order=order, step=step).first()


# --- placing and scheduling -----------------------------------------------------------------


def order_place(*, item_id: int, quantity: int, form_token: str | None = None) -> Order:
    """Write the order (its id is the workflow instance id), then schedule its workflow.

    The row is committed before the engine hears of it, so no workflow runs for an order that
    does not exist; if scheduling fails the order waits for runworker's sweep.

    ``form_token`` (32 hex digits, made when the order form is shown) makes a repeat harmless:
    the order's id is derived from it and the figures, so the same form sent again with the
    same item and quantity (a double click, a request sent again) returns the order it placed
    the first time, and sent with other figures places another.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidQuantity("Quantity must be a whole number of at least 1.")
    order_id = new_order_id()
    if form_token is not None:
        if not FORM_TOKEN.fullmatch(form_token):
            raise InvalidFormToken("This form is out of date; reload the page and order again.")
        order_id = uuid.uuid5(FORM_ORDERS, f"{form_token}/{item_id}/{quantity}").hex
    with transaction.atomic():
        placed = Order.objects.filter(pk=order_id).first()
        if placed is not None:
            return placed
        try:
            item = InventoryItem.objects.get(pk=item_id)
        except (InventoryItem.DoesNotExist, ValueError, TypeError):
            raise UnknownItem("That item is not in the inventory.") from None
        if quantity > item.on_hand:
            raise NotEnoughStock(
                f"Only {item.on_hand} {item.name} available; you asked for {quantity}."
            )
        total = item.unit_cost * quantity
        if total > MAX_TOTAL:
            raise InvalidQuantity(
                f"{quantity} {item.name} would cost ${amount_text(total)}; an order's total"
                f" must not exceed ${amount_text(MAX_TOTAL)}."
            )
        try:
            with transaction.atomic():
                order = Order.objects.create(
                    id=order_id, item=item, quantity=quantity, total_cost=total
                )
        except IntegrityError:
            # The same form, sent twice at once: the other request has just placed it.
            return Order.objects.get(pk=order_id)
    transaction.on_commit(lambda: order_schedule(order_id=order.id))
    return order


def order_workflow_input(order: Order) -> dict[str, Any]:
    """The workflow's input. Threshold and timeout travel in it, so a replay never reads settings."""
    return {
        "item_name": order.item.name,
        "quantity": order.quantity,
        "total_cost": amount_text(order.total_cost),
        "approval_threshold": str(settings.ORDER_APPROVAL_THRESHOLD),
        "approval_timeout_seconds": settings.ORDER_APPROVAL_TIMEOUT,
    }


def order_schedule(*, order_id: str) -> bool:
    """Ask the engine to run the order's workflow; True once it has. Safe to call again."""
    order = Order.objects.select_related("item").get(pk=order_id)
    if order.scheduled_at is not None or order.is_final:
        return True
    try:
        engine.workflow_schedule(instance_id=order.id, input=order_workflow_input(order))
    except EngineUnavailable as error:
        logger.warning("Order %s not scheduled yet, runworker will retry: %s", order.id, error)
        return False
    Order.objects.filter(pk=order.id, scheduled_at__isnull=True).update(scheduled_at=timezone.now())
    return True


# --- what the workflow's activities do ------------------------------------------------------


def order_notify(
    *,
    order_id: str,
    step: str,
    message: str,
    status: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Add one timeline line (once per step) and move the order to ``status``.

    An order already in a final state is left alone: a replay of a finished workflow, or an
    activity still in flight when the order was cancelled, must not reopen it.
    """
    with transaction.atomic():
        order = _locked_order(order_id)
        if order.is_final:
            return False
        _, created = OrderEvent.objects.get_or_create(
            order=order, step=step, defaults={"message": message}
        )
        changes: dict[str, Any] = {}
        if status and status != order.status:
            changes["status"] = status
        if result is not None:
            changes["result"] = result
        if order.scheduled_at is None:
            changes["scheduled_at"] = timezone.now()
        if changes:
            changes["updated_at"] = timezone.now()
            Order.objects.filter(pk=order.pk).update(**changes)
        return created


@dataclass(frozen=True)
class Reservation:
    success: bool
    available: int


def inventory_reserve(*, order_id: str) -> Reservation:
    """Hold the order's units (once). ``available`` is what was free before this reservation."""
    with transaction.atomic():
        order = _locked_order(order_id)
        done = _entry(order, LedgerStep.RESERVE)
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
        order = _locked_order(order_id)
        return _release_locked(order)


def _release_locked(order: Order) -> bool:
    reserved = _entry(order, LedgerStep.RESERVE)
    if reserved is None or _entry(order, LedgerStep.RELEASE) or _entry(order, LedgerStep.DEDUCT):
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
        order = _locked_order(order_id)
        if _entry(order, LedgerStep.DEDUCT) is None:
            if order.is_final:  # cancelled (or closed) while the workflow ran: nothing ships
                raise InventoryUpdateFailed(
                    f"Order {order.id} is {order.get_status_display().lower()}."
                )
            reserved = _entry(order, LedgerStep.RESERVE)
            if reserved is None or _entry(order, LedgerStep.RELEASE) is not None:
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


def payment_process(*, order_id: str) -> Decimal:
    """Take the order's payment (once). A real gateway call would carry (order id, step) as its
    idempotency key; here the ledger row is the payment."""
    with transaction.atomic():
        order = _locked_order(order_id)
        paid = _entry(order, LedgerStep.PAYMENT)
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
        order = _locked_order(order_id)
        refunded = _refund_locked(order)
        _release_locked(order)
        return refunded


def _refund_locked(order: Order) -> bool:
    paid = _entry(order, LedgerStep.PAYMENT)
    if paid is None or _entry(order, LedgerStep.REFUND) is not None:
        return False
    if _entry(order, LedgerStep.DEDUCT) is not None:
        # The goods have left: a failure path that runs after that (an inventory step whose
        # commit succeeded although its caller saw an error) must not give the money back too.
        return False
    LedgerEntry.objects.create(
        order=order, step=LedgerStep.REFUND, item_id=paid.item_id, amount=paid.amount
    )
    return True


def order_request_approval(*, order_id: str, deadline: datetime) -> None:
    """Put the order in the managers' queue until ``deadline`` (computed by the workflow)."""
    with transaction.atomic():
        order = _locked_order(order_id)
        if order.is_final:
            return
        OrderEvent.objects.get_or_create(
            order=order,
            step="approval_requested",
            defaults={
                "message": f"Requesting approval for payment of {amount_text(order.total_cost)} "
                f"USD for {order.quantity} {order.item.name.lower()}"
            },
        )
        Order.objects.filter(pk=order.pk).update(
            status=OrderStatus.AWAITING_APPROVAL,
            approval_deadline=deadline,
            updated_at=timezone.now(),
        )


# --- managers' decisions ----------------------------------------------------------------------


def order_approve(*, order_id: str, user: User) -> Order:
    return _order_decide(order_id=order_id, user=user, approved=True)


def order_reject(*, order_id: str, user: User) -> Order:
    return _order_decide(order_id=order_id, user=user, approved=False)


def _order_decide(*, order_id: str, user: User, approved: bool) -> Order:
    """Record the decision and who made it, then raise ``manager_approval`` on the workflow.

    The decision is committed first; if the engine is away the event is raised again by
    runworker's sweep (a second identical event is never consumed, so that is harmless).
    """
    if not user.is_active or not user.has_perm(APPROVE_PERMISSION):
        raise ApprovalNotPermitted("You are not allowed to approve or reject orders.")
    verb = "approve" if approved else "reject"
    with transaction.atomic():
        order = _locked_order(order_id)
        if order.status != OrderStatus.AWAITING_APPROVAL or order.approved is not None:
            raise NotAwaitingApproval(
                f"Order {order.id} is not awaiting approval "
                f"({order.get_status_display().lower()}); nothing to {verb}."
            )
        now = timezone.now()
        if order.approval_deadline is not None and order.approval_deadline <= now:
            raise ApprovalWindowClosed(
                f"The approval window for order {order.id} has closed; it will be cancelled."
            )
        order.approved = approved
        order.decided_by = user if isinstance(user, AbstractBaseUser) else None
        order.decided_at = now
        order.save(update_fields=["approved", "decided_by", "decided_at", "updated_at"])
    transaction.on_commit(lambda: order_send_decision(order_id=order.id))
    return order


def order_send_decision(*, order_id: str) -> bool:
    order = Order.objects.get(pk=order_id)
    if order.approved is None or order.status != OrderStatus.AWAITING_APPROVAL:
        return True
    try:
        engine.workflow_raise_approval(order.id, approved=order.approved)
    except EngineUnavailable as error:
        logger.warning("Decision for order %s not delivered yet: %s", order.id, error)
        return False
    return True


def order_cancel(*, order_id: str, user: User) -> Order:
    """Cancel the order, release its stock and refund it if it was paid; then stop its workflow.

    The order is closed first, under its lock: a step of the workflow either committed before
    (an order whose goods have left is not cancellable) or runs after and finds the order
    cancelled, and does nothing (``inventory_reserve``, ``payment_process``,
    ``inventory_deduct``). So stopping the workflow afterwards only saves it the work; when the
    engine cannot be reached the order is cancelled all the same.
    """
    if not user.is_active or not user.has_perm(CANCEL_PERMISSION):
        raise ApprovalNotPermitted("You are not allowed to cancel orders.")
    with transaction.atomic():
        order = _locked_order(order_id)
        _check_cancellable(order)
        _refund_locked(order)
        _release_locked(order)
        who = user.get_username() if isinstance(user, AbstractBaseUser) else "a manager"
        _close_locked(
            order,
            OrderStatus.CANCELLED,
            step="cancelled",
            message=f"Order {order.id} has been cancelled by {who}.",
            result={"processed": False},
        )
    try:
        engine.workflow_terminate(order.id)
    except EngineUnavailable as error:
        logger.warning("Order %s cancelled; its workflow was not stopped: %s", order.id, error)
    return order


def _check_cancellable(order: Order) -> None:
    if order.is_final:
        raise OrderNotCancellable(
            f"Order {order.id} is already {order.get_status_display().lower()}."
        )
    if LedgerEntry.objects.filter(order=order, step=LedgerStep.DEDUCT).exists():
        raise OrderNotCancellable(f"Order {order.id} has already been fulfilled.")


def order_fail_stuck(*, order_id: str, reason: str) -> bool:
    """Close an order whose workflow ended without saying so (failed or terminated outside the
    app): refund, release, mark it failed; or, when its goods have already left the shop (its
    last notification is what went missing), mark it completed. Safe to run twice."""
    with transaction.atomic():
        order = _locked_order(order_id)
        if order.is_final:
            return False
        if _entry(order, LedgerStep.DEDUCT) is not None:
            _close_locked(
                order,
                OrderStatus.COMPLETED,
                step="completed",
                message=f"Order {order.id} has completed!",
                result={"processed": True},
            )
            logger.warning("Order %s marked completed (%s): its goods had left", order_id, reason)
            return True
        _refund_locked(order)
        _release_locked(order)
        _close_locked(
            order,
            OrderStatus.FAILED,
            step="failed",
            message=f"Order {order.id} Failed!",
            result={"processed": False, "reason": reason},
        )
    logger.warning("Order %s marked failed: %s", order_id, reason)
    return True


def _close_locked(
    order: Order, status: OrderStatus, *, step: str, message: str, result: dict[str, Any]
) -> None:
    """Put the order in a final ``status`` with its last timeline line (once per step)."""
    OrderEvent.objects.get_or_create(order=order, step=step, defaults={"message": message})
    order.status = status
    order.result = result
    order.save(update_fields=["status", "result", "updated_at"])


# --- inventory and accounts -------------------------------------------------------------------


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


def manager_account_create(*, username: str, password: str) -> AbstractBaseUser | None:
    """Create the staff account that may approve orders; None if it already exists. The password
    must pass the site's password validators (``WeakPassword`` says which it failed)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    user_model = get_user_model()
    with transaction.atomic():
        if user_model.objects.filter(username=username).exists():
            return None
        try:
            validate_password(password, user=user_model(username=username))
        except ValidationError as error:
            raise WeakPassword(" ".join(error.messages)) from None
        user = user_model.objects.create_user(username=username, password=password, is_staff=True)
        user.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="orders",
                codename__in=[
                    "approve_order",
                    "view_order",
                    "change_order",
                    "view_inventoryitem",
                    "change_inventoryitem",
                ],
            )
        )
    return user
