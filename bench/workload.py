"""The benchmark's workflows for dapr.ext.workflow: the order shape and a chain of N steps.

The order shape mirrors orders/workflows/order_processing.py's happy path (notify, verify
inventory, pay, update inventory, notify: five chained activities) with activities that do
nearly nothing, so what is measured is the engine and the SDK, not the application.
"""

from __future__ import annotations

from typing import Any

from dapr.ext.workflow import DaprWorkflowContext, WorkflowActivityContext

ORDER_WORKFLOW = "bench_order"
CHAIN_WORKFLOW = "bench_chain"
ORDER_ACTIVITIES = 5


def order_input(i: int) -> dict[str, Any]:
    return {"item_name": "Cars", "quantity": 1 + i % 3, "total_cost": "5000"}


def notify(ctx: WorkflowActivityContext, note: dict[str, Any]) -> None:
    return None


def verify_inventory(ctx: WorkflowActivityContext, order: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "item_name": order["item_name"]}


def process_payment(ctx: WorkflowActivityContext, order: dict[str, Any]) -> dict[str, Any]:
    return {"paid": order["total_cost"]}


def update_inventory(ctx: WorkflowActivityContext, order: dict[str, Any]) -> dict[str, Any]:
    return {"updated": order["quantity"]}


def bench_order(ctx: DaprWorkflowContext, order: dict[str, Any]):
    order_id = ctx.instance_id
    yield ctx.call_activity(notify, input={"order_id": order_id, "step": "received"})
    stock = yield ctx.call_activity(verify_inventory, input=order)
    if not stock["success"]:
        return {"processed": False}
    yield ctx.call_activity(process_payment, input=order)
    yield ctx.call_activity(update_inventory, input=order)
    yield ctx.call_activity(notify, input={"order_id": order_id, "step": "completed"})
    return {"processed": True}


def chain_step(ctx: WorkflowActivityContext, n: int) -> int:
    return n + 1


def bench_chain(ctx: DaprWorkflowContext, steps: int):
    value = 0
    for _ in range(int(steps)):
        value = yield ctx.call_activity(chain_step, input=value)
    return value


def register(runtime: Any) -> None:
    runtime.register_workflow(bench_order, name=ORDER_WORKFLOW)
    runtime.register_workflow(bench_chain, name=CHAIN_WORKFLOW)
    for activity in (notify, verify_inventory, process_payment, update_inventory, chain_step):
        runtime.register_activity(activity)
