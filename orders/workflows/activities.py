"""The workflow's activities: all I/O lives here, each one an interface onto one service.

Activities run at least once: a worker that dies after the work but before reporting it runs the
activity again. Each service called here is keyed by (order id, step) under a unique constraint,
so the second run returns what the first recorded and changes nothing. Log lines keep the
quickstart's wording and logger names (``INFO:VerifyInventoryActivity:There are 10 Cars ...``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import close_old_connections

from orders.models import Order, amount_text
from orders.observability import activity_work
from orders.selectors import order_recorded_decision
from orders.services.inventory import inventory_deduct, inventory_release, inventory_reserve
from orders.services.orders import order_notify, order_request_approval
from orders.services.payments import payment_process, payment_refund

notify_log = logging.getLogger("NotifyActivity")
verify_log = logging.getLogger("VerifyInventoryActivity")
approval_log = logging.getLogger("RequestApprovalActivity")
payment_log = logging.getLogger("ProcessPaymentActivity")
update_log = logging.getLogger("UpdateInventoryActivity")
refund_log = logging.getLogger("RefundPaymentActivity")


F = TypeVar("F", bound=Callable[..., Any])


def activity(fn: F) -> F:
    """Treat each activity run like a request: it runs on one of the SDK's pool threads, which
    keep a Django connection each, so connections past CONN_MAX_AGE (or broken) are closed
    before and after, as Django does around a request. When the worker is traced, the work is
    a span (orders.observability.activity_work)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            with activity_work(fn.__name__, args[1] if len(args) > 1 else None):
                return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return run  # type: ignore[return-value]


def _order(order_id: str) -> Order:
    return Order.objects.select_related("item").get(pk=order_id)


def _ordered(order: Order) -> str:
    return f"{order.quantity} {order.item.name.lower()}"


@activity
def notify_activity(ctx: Any, notification: dict[str, Any]) -> None:
    notify_log.info(notification["message"])
    order_notify(
        order_id=notification["order_id"],
        step=notification["step"],
        message=notification["message"],
        status=notification.get("status"),
        result=notification.get("result"),
        detail=notification.get("detail") or "",
    )


@activity
def verify_inventory_activity(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    order = _order(request["order_id"])
    verify_log.info(f"Verifying inventory for order {order.id} of {_ordered(order)}")
    reservation = inventory_reserve(order_id=order.id)
    verify_log.info(f"There are {reservation.available} {order.item.name} available for purchase")
    return {"success": reservation.success, "available": reservation.available}


@activity
def request_approval_activity(ctx: Any, request: dict[str, Any]) -> None:
    order = _order(request["order_id"])
    approval_log.info(
        f"Requesting approval for payment of {amount_text(order.total_cost)} USD "
        f"for {_ordered(order)}"
    )
    deadline = datetime.fromisoformat(request["deadline"])
    if deadline.tzinfo is None:  # the workflow clock is naive UTC
        deadline = deadline.replace(tzinfo=UTC)
    order_request_approval(order_id=order.id, deadline=deadline)


@activity
def read_approval_decision_activity(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    """The decision the approval service recorded, read when ``manager_approval`` wakes the
    workflow: the event itself carries no authority, so one raised straight at the engine, with
    nothing recorded, decides nothing."""
    order_id = request["order_id"]
    approved = order_recorded_decision(order_id=order_id)
    if approved is None:
        approval_log.warning(
            f"Ignored a manager_approval event for order {order_id}: no decision was recorded "
            "through the app"
        )
    return {"decided": approved is not None, "approved": bool(approved)}


@activity
def process_payment_activity(ctx: Any, request: dict[str, Any]) -> None:
    order = _order(request["order_id"])
    amount = amount_text(order.total_cost)
    payment_log.info(f"Processing payment: {order.id} for {_ordered(order)} at {amount} USD")
    payment_process(order_id=order.id)
    payment_log.info(f"Payment for request ID {order.id} processed successfully")


@activity
def update_inventory_activity(ctx: Any, request: dict[str, Any]) -> None:
    order = _order(request["order_id"])
    update_log.info(f"Checking inventory for order {order.id} for {_ordered(order)}")
    left = inventory_deduct(order_id=order.id)
    update_log.info(f"There are now {left} {order.item.name.lower()} left in stock")


@activity
def release_inventory_activity(ctx: Any, request: dict[str, Any]) -> None:
    inventory_release(order_id=request["order_id"])


@activity
def refund_payment_activity(ctx: Any, request: dict[str, Any]) -> None:
    order = _order(request["order_id"])
    if payment_refund(order_id=order.id):
        refund_log.info(f"Refunded {amount_text(order.total_cost)} USD for order {order.id}")


ALL = (
    notify_activity,
    verify_inventory_activity,
    request_approval_activity,
    read_approval_decision_activity,
    process_payment_activity,
    update_inventory_activity,
    release_inventory_activity,
    refund_payment_activity,
)
