"""The order-shaped workflow whose traces were recorded from daprd, and its scenarios.

tools/record_daprd_trace.py runs these against real daprd to record tests/fixtures/
daprd-trace-<scenario>.json; sidecar/tests/test_tracing.py runs the same against the embedded
sidecar and compares. The names are the app's (orders/workflows), the bodies trivial: what is
compared is the engine's spans, not the app's work.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Generator
from datetime import timedelta
from typing import Any

from dapr.ext.workflow import DaprWorkflowClient, TaskFailedError, WorkflowRuntime, when_any
from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf import wrappers_pb2

WORKFLOW = "order_processing_workflow"
APPROVAL_EVENT = "manager_approval"

SCENARIOS: dict[str, dict[str, Any]] = {
    "small": {"input": {}},
    "approved": {"input": {"approval_timeout_seconds": 8}, "approve": True},
    "timed-out": {"input": {"approval_timeout_seconds": 2}},
    "payment-failed": {"input": {"fail_payment": True}},
    "failed-unhandled": {"input": {"fail_payment": True, "unhandled": True}},
    # The client's trace context: as gRPC metadata (what opentelemetry-instrumentation-grpc
    # and the app's client send), and in the request's own field.
    "traceparent-metadata": {"input": {}, "context": "metadata"},
    "parent-trace-context": {"input": {}, "context": "request"},
}


class OrderShapedApp:
    """Registers the workflow and its activities (fresh function objects: the SDK marks each
    one registered) and runs scenarios with a client."""

    def __init__(self) -> None:
        self.approval_requested = threading.Event()

    def register(self, runtime: WorkflowRuntime) -> None:
        def activity(name: str, body: Callable[[dict[str, Any]], Any] | None = None) -> Any:
            def run(ctx: Any, data: dict[str, Any]) -> Any:
                return body(data) if body else None

            run.__name__ = name
            runtime.register_activity(run)
            return run

        def pay(data: dict[str, Any]) -> None:
            if data.get("fail_payment"):
                raise RuntimeError("payment declined")

        notify = activity("notify_activity")
        verify = activity("verify_inventory_activity", lambda d: {"success": True})
        request = activity("request_approval_activity", lambda d: self.approval_requested.set())
        decision = activity("read_approval_decision_activity", lambda d: {"decided": True})
        payment = activity("process_payment_activity", pay)
        update = activity("update_inventory_activity")
        release = activity("release_inventory_activity")
        refund = activity("refund_payment_activity")

        def order_processing_workflow(ctx: Any, order: dict[str, Any]) -> Generator[Any, Any, Any]:
            yield ctx.call_activity(notify, input={"step": "received"})
            yield ctx.call_activity(verify, input={})
            if order.get("approval_timeout_seconds"):
                wait = timedelta(seconds=order["approval_timeout_seconds"])
                yield ctx.call_activity(request, input={})
                timer = ctx.create_timer(ctx.current_utc_datetime + wait)
                winner = yield when_any([ctx.wait_for_external_event(APPROVAL_EVENT), timer])
                if winner == timer:
                    yield ctx.call_activity(release, input={})
                    yield ctx.call_activity(notify, input={"step": "timed_out"})
                    return {"processed": False}
                yield ctx.call_activity(decision, input={})
            try:
                yield ctx.call_activity(payment, input=order)
                yield ctx.call_activity(update, input={})
            except TaskFailedError:
                if order.get("unhandled"):
                    raise
                yield ctx.call_activity(refund, input={})
                yield ctx.call_activity(notify, input={"step": "failed"})
                return {"processed": False}
            yield ctx.call_activity(notify, input={"step": "completed"})
            return {"processed": True}

        runtime.register_workflow(order_processing_workflow, name=WORKFLOW)

    def run(self, client: DaprWorkflowClient, scenario: str, instance_id: str) -> dict[str, Any]:
        """Run one scenario to its end; returns its status and the client's trace ids."""
        spec = SCENARIOS[scenario]
        result: dict[str, Any] = {"instance_id": instance_id}
        context = spec.get("context")
        if context is None:
            client.schedule_new_workflow(WORKFLOW, input=spec["input"], instance_id=instance_id)
        else:
            trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
            result["client_trace_id"], result["client_span_id"] = trace_id, span_id
            header = f"00-{trace_id}-{span_id}-01"
            request = pb.CreateInstanceRequest(
                name=WORKFLOW,
                instanceId=instance_id,
                input=wrappers_pb2.StringValue(value=json.dumps(spec["input"])),
            )
            stub = client._DaprWorkflowClient__obj._stub  # type: ignore[attr-defined]
            if context == "request":
                request.parentTraceContext.traceParent = header
                stub.StartInstance(request)
            else:
                stub.StartInstance(request, metadata=[("traceparent", header)])
        if spec.get("approve"):
            if not self.approval_requested.wait(30):
                raise AssertionError("the approval request never ran")
            self._wait_for_timer(client, instance_id)
            client.raise_workflow_event(instance_id, APPROVAL_EVENT, data={"approval": True})
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        result["runtime_status"] = state.runtime_status.name if state else None
        return result

    @staticmethod
    def _wait_for_timer(client: DaprWorkflowClient, instance_id: str) -> None:
        """The event should arrive while the workflow waits for it, as a manager's would."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = client.get_workflow_history(instance_id)
            if any(e.event_type.value == "timerCreated" for e in events):
                return
            time.sleep(0.05)
        raise AssertionError(f"{instance_id} never started waiting for the approval")
