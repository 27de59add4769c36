"""The order-processing workflow: orchestration only.

Replay rules: this code runs again from the top every time the workflow wakes up, so it must be
deterministic. No clock (use ``ctx.current_utc_datetime``), no randomness, no ORM, no network,
no settings (threshold and timeout arrive in the input, fixed when the order was scheduled).
Every effect is an activity; a durable timer races the manager's ``manager_approval`` event, and
the event only wakes the workflow: the decision is the one the app recorded (an activity reads
it), so an event raised straight at the engine approves nothing.
Changing the order or kind of the yields below breaks in-flight instances: use the SDK's
versioning for that, not an edit in place.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from decimal import Decimal
from typing import Any

from dapr.ext.workflow import DaprWorkflowContext, TaskFailedError, when_any

from orders.workflows.activities import (
    notify_activity,
    process_payment_activity,
    read_approval_decision_activity,
    refund_payment_activity,
    release_inventory_activity,
    request_approval_activity,
    update_inventory_activity,
    verify_inventory_activity,
)

# The manager's answer: the external event the workflow waits for, as the Dapr Workflow
# quickstart names it, with data {"approval": true|false}. Services raise it through
# orders.workflow_client with approval_event(); this is the one place that names it.
APPROVAL_EVENT = "manager_approval"
# The SDK's patch marker for "the event is a wake-up, the recorded decision decides": instances
# that took the event's data as the decision before this change replay as they ran.
RECORDED_DECISION_PATCH = "recorded-decision"

# Order statuses the workflow moves an order to (values of orders.models.OrderStatus).
PROCESSING = "processing"
COMPLETED = "completed"
INSUFFICIENT_STOCK = "insufficient_stock"
REJECTED = "rejected"
CANCELLED = "cancelled"
FAILED = "failed"


def approval_event(*, approved: bool) -> tuple[str, dict[str, bool]]:
    """The event name and data that deliver a manager's decision to this workflow."""
    return APPROVAL_EVENT, {"approval": approved}


def _note(order_id: str, step: str, message: str, status: str | None = None, **extra: Any) -> dict:
    return {"order_id": order_id, "step": step, "message": message, "status": status, **extra}


def order_processing_workflow(
    ctx: DaprWorkflowContext, order: dict[str, Any]
) -> Generator[Any, Any, dict[str, bool]]:
    """Notify, reserve, (approve), pay, update inventory, notify: the quickstart's flow."""
    order_id = ctx.instance_id
    item_name = order["item_name"]
    quantity = int(order["quantity"])
    total_cost = order["total_cost"]
    ordered = f"{quantity} {item_name.lower()}"
    failed = {"processed": False}

    yield ctx.call_activity(
        notify_activity,
        input=_note(
            order_id,
            "received",
            f"Received order {order_id} for {ordered} at ${total_cost} !",
            PROCESSING,
        ),
    )

    stock = yield ctx.call_activity(verify_inventory_activity, input={"order_id": order_id})
    if not stock["success"]:
        yield ctx.call_activity(
            notify_activity,
            input=_note(
                order_id,
                "insufficient",
                f"Insufficient inventory for {item_name}!",
                INSUFFICIENT_STOCK,
                result=failed,
            ),
        )
        return failed

    if Decimal(total_cost) > Decimal(order["approval_threshold"]):
        deadline = ctx.current_utc_datetime + timedelta(
            seconds=float(order["approval_timeout_seconds"])
        )
        yield ctx.call_activity(
            request_approval_activity,
            input={"order_id": order_id, "deadline": deadline.isoformat()},
        )
        timeout_task = ctx.create_timer(deadline)
        while True:
            approval_task = ctx.wait_for_external_event(APPROVAL_EVENT)
            winner = yield when_any([approval_task, timeout_task])
            if winner == timeout_task:
                break
            if not ctx.is_patched(RECORDED_DECISION_PATCH):
                decision = approval_task.get_result()
                break
            recorded = yield ctx.call_activity(
                read_approval_decision_activity, input={"order_id": order_id}
            )
            if recorded["decided"]:
                decision = {"approval": recorded["approved"]}
                break
            # Nobody recorded a decision: the activity logged the attempt; keep waiting.
        if winner == timeout_task:
            yield ctx.call_activity(release_inventory_activity, input={"order_id": order_id})
            yield ctx.call_activity(
                notify_activity,
                input=_note(
                    order_id,
                    "timed_out",
                    f"Payment for order {order_id} has been cancelled due to timeout!",
                    CANCELLED,
                    result=failed,
                ),
            )
            return failed
        # Only an explicit {"approval": true} approves; anything else is a refusal.
        if isinstance(decision, dict) and decision.get("approval") is True:
            yield ctx.call_activity(
                notify_activity,
                input=_note(
                    order_id,
                    "approved",
                    f"Payment for order {order_id} has been approved!",
                    PROCESSING,
                ),
            )
        else:
            yield ctx.call_activity(release_inventory_activity, input={"order_id": order_id})
            yield ctx.call_activity(
                notify_activity,
                input=_note(
                    order_id,
                    "rejected",
                    f"Payment for order {order_id} has been rejected!",
                    REJECTED,
                    result=failed,
                ),
            )
            return failed

    try:
        yield ctx.call_activity(process_payment_activity, input={"order_id": order_id})
        yield ctx.call_activity(update_inventory_activity, input={"order_id": order_id})
    except TaskFailedError as error:
        # Refunds the payment if one was taken and gives the reserved units back.
        yield ctx.call_activity(refund_payment_activity, input={"order_id": order_id})
        # The failed step's error travels in the notification (the order page shows it); it
        # comes from the history, so a replay passes the same text.
        yield ctx.call_activity(
            notify_activity,
            input=_note(
                order_id,
                "failed",
                f"Order {order_id} Failed!",
                FAILED,
                result=failed,
                detail=error.details.message or str(error),
            ),
        )
        return failed

    done = {"processed": True}
    yield ctx.call_activity(
        notify_activity,
        input=_note(
            order_id, "completed", f"Order {order_id} has completed!", COMPLETED, result=done
        ),
    )
    return done
