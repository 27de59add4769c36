"""Orders: place one and schedule its workflow; the timeline and approval request its workflow
writes; cancel one; close one whose workflow ended without closing it."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders import workflow_client
from orders.exceptions import (
    ApprovalNotPermitted,
    EngineUnavailable,
    InvalidFormToken,
    InvalidQuantity,
    NotEnoughStock,
    OrderNotCancellable,
    UnknownItem,
)
from orders.models import (
    MAX_TOTAL,
    InventoryItem,
    LedgerEntry,
    LedgerStep,
    Order,
    OrderEvent,
    OrderStatus,
    amount_text,
    new_order_id,
)
from orders.services.inventory import inventory_release_locked
from orders.services.ledger import ledger_entry, locked_order
from orders.services.payments import payment_refund_locked

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser

CANCEL_PERMISSION = "orders.change_order"
FORM_TOKEN = re.compile(r"[0-9a-f]{32}")
FORM_ORDERS = uuid.UUID("5d0c3c4e-8f0b-4a57-9a55-6a1f2f6f1c11")  # namespace of form-placed ids


# --- placing and scheduling -----------------------------------------------------------------


def order_place(
    *,
    item_id: int,
    quantity: int,
    form_token: str | None = None,
    placed_by: AbstractBaseUser | None = None,
) -> Order:
    """Write the order (its id is the workflow instance id), then schedule its workflow.

    ``placed_by`` is the customer whose order it is: they, and staff, may see and follow it.

    The row is committed before the engine hears of it, so no workflow runs for an order that
    does not exist; if scheduling fails the order waits for runworker's sweep.

    ``form_token`` (32 hex digits, made when the order form is shown) makes a repeat harmless:
    the order's id is derived from it and the figures, so the same form sent again with the
    same item and quantity (a double click, a request sent again) returns the order it placed
    the first time, and sent with other figures places another. The customer is part of the
    derivation, so one person's token never finds another's order.
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidQuantity("Quantity must be a whole number of at least 1.")
    order_id = new_order_id()
    if form_token is not None:
        if not FORM_TOKEN.fullmatch(form_token):
            raise InvalidFormToken("This form is out of date; reload the page and order again.")
        customer = placed_by.pk if placed_by is not None else ""
        order_id = uuid.uuid5(FORM_ORDERS, f"{form_token}/{customer}/{item_id}/{quantity}").hex
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
                    id=order_id,
                    item=item,
                    quantity=quantity,
                    total_cost=total,
                    placed_by=placed_by,
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
        workflow_client.workflow_schedule(instance_id=order.id, input=order_workflow_input(order))
    except EngineUnavailable as error:
        logger.warning("Order %s not scheduled yet, runworker will retry: %s", order.id, error)
        return False
    Order.objects.filter(pk=order.id, scheduled_at__isnull=True).update(scheduled_at=timezone.now())
    return True


def order_reschedule(*, order_id: str) -> bool:
    """Run the order's workflow again because the engine lost the instance (its database was
    replaced); True once scheduled. Every activity is idempotent, so work already done is not
    done twice."""
    Order.objects.filter(pk=order_id).update(scheduled_at=None)
    return order_schedule(order_id=order_id)


# --- what the workflow's activities write ---------------------------------------------------


def order_notify(
    *,
    order_id: str,
    step: str,
    message: str,
    status: str | None = None,
    result: dict[str, Any] | None = None,
    detail: str = "",
) -> bool:
    """Add one timeline line (once per step) and move the order to ``status``; ``detail`` says
    why the order stopped there (the failed step's error).

    An order already in a final state is left alone: a replay of a finished workflow, or an
    activity still in flight when the order was cancelled, must not reopen it.
    """
    with transaction.atomic():
        order = locked_order(order_id)
        if order.is_final:
            return False
        _, created = OrderEvent.objects.get_or_create(
            order=order, step=step, defaults={"message": message, "detail": detail}
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


def order_request_approval(*, order_id: str, deadline: datetime) -> None:
    """Put the order in the managers' queue until ``deadline`` (computed by the workflow)."""
    with transaction.atomic():
        order = locked_order(order_id)
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


# --- closing an order -------------------------------------------------------------------------


def order_cancel(*, order_id: str, user: User) -> Order:
    """Cancel the order, release its stock and refund it if it was paid; then stop its workflow.

    Staff with the change permission may cancel any order whose goods have not left; the
    customer who placed it, only while it awaits a manager's approval that nobody has given
    (after that, the decision is on its way to the workflow).

    The order is closed first, under its lock: a step of the workflow either committed before
    (an order whose goods have left is not cancellable) or runs after and finds the order
    cancelled, and does nothing (``inventory_reserve``, ``payment_process``,
    ``inventory_deduct``). So stopping the workflow afterwards only saves it the work; when the
    engine cannot be reached the order is cancelled all the same.
    """
    if not user.is_active:
        raise ApprovalNotPermitted("You are not allowed to cancel orders.")
    staff = user.has_perm(CANCEL_PERMISSION)
    with transaction.atomic():
        order = locked_order(order_id)
        if not staff:
            _check_customer_may_cancel(order, user)
        _check_cancellable(order)
        payment_refund_locked(order)
        inventory_release_locked(order)
        who = user.get_username() if isinstance(user, AbstractBaseUser) else "a manager"
        _close_locked(
            order,
            OrderStatus.CANCELLED,
            step="cancelled",
            message=f"Order {order.id} has been cancelled by {who}.",
            result={"processed": False},
            detail=f"Cancelled by {who}",
        )
    try:
        workflow_client.workflow_terminate(order.id)
    except EngineUnavailable as error:
        logger.warning("Order %s cancelled; its workflow was not stopped: %s", order.id, error)
    return order


def _check_customer_may_cancel(order: Order, user: User) -> None:
    if user.pk is None or order.placed_by_id != user.pk:
        raise ApprovalNotPermitted("You are not allowed to cancel orders.")
    if order.status != OrderStatus.AWAITING_APPROVAL or order.approved is not None:
        raise OrderNotCancellable(
            f"Order {order.id} can be cancelled only while it awaits a manager's approval;"
            f" it is {order.get_status_display().lower()}."
        )


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
        order = locked_order(order_id)
        if order.is_final:
            return False
        if ledger_entry(order, LedgerStep.DEDUCT) is not None:
            _close_locked(
                order,
                OrderStatus.COMPLETED,
                step="completed",
                message=f"Order {order.id} has completed!",
                result={"processed": True},
            )
            logger.warning("Order %s marked completed (%s): its goods had left", order_id, reason)
            return True
        payment_refund_locked(order)
        inventory_release_locked(order)
        _close_locked(
            order,
            OrderStatus.FAILED,
            step="failed",
            message=f"Order {order.id} Failed!",
            result={"processed": False, "reason": reason},
            detail=reason,
        )
    logger.warning("Order %s marked failed: %s", order_id, reason)
    return True


def _close_locked(
    order: Order,
    status: OrderStatus,
    *,
    step: str,
    message: str,
    result: dict[str, Any],
    detail: str = "",
) -> None:
    """Put the order in a final ``status`` with its last timeline line (once per step)."""
    OrderEvent.objects.get_or_create(
        order=order, step=step, defaults={"message": message, "detail": detail}
    )
    order.status = status
    order.result = result
    order.save(update_fields=["status", "result", "updated_at"])
