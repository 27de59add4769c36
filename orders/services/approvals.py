"""Managers' decisions on orders over the approval threshold, and their delivery to the order's
workflow as its ``manager_approval`` event."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from orders import workflow_client
from orders.exceptions import (
    ApprovalNotPermitted,
    ApprovalWindowClosed,
    EngineUnavailable,
    NotAwaitingApproval,
)
from orders.models import Order, OrderStatus
from orders.services.ledger import locked_order
from orders.services.orders import User
from orders.workflows.order_processing import approval_event

logger = logging.getLogger(__name__)

APPROVE_PERMISSION = "orders.approve_order"


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
        order = locked_order(order_id)
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
    """Raise the recorded decision on the order's workflow; True once delivered (or moot)."""
    order = Order.objects.get(pk=order_id)
    if order.approved is None or order.status != OrderStatus.AWAITING_APPROVAL:
        return True
    event_name, data = approval_event(approved=order.approved)
    try:
        workflow_client.workflow_raise_event(order.id, event_name, data=data)
    except EngineUnavailable as error:
        logger.warning("Decision for order %s not delivered yet: %s", order.id, error)
        return False
    return True
