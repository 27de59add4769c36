"""Activity results: a worker's answer to an activity becomes an event in its instance's inbox.

Activities run at least once (a stream that ends hands its activities out again), so a result
that answers no activity in flight (stale, duplicate, from an earlier generation) is dropped
and the call still succeeds, as daprd does. A result that would make the instance's next work
item too large (engine/payload.py) fails the activity, and the call answers RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine import payload
from sidecar.engine.instance import Instance, now_ns
from sidecar.engine.state import EngineState
from sidecar.errors import PayloadTooLarge
from sidecar.limits import describe
from sidecar.storage import sql


async def complete_activity(state: EngineState, response: pb.ActivityResponse) -> None:
    """Record an activity's result. A stale or duplicate result is ignored (daprd: OK)."""
    flight = state.dispatch.land_activity(response)
    if flight is None:
        return
    inst = state.instances.get(flight.instance_id)
    if inst is None or inst.done or inst.execution_id != flight.execution_id:
        return
    request = inst.activities.pop(flight.task_id, None)
    if request is None:
        return
    for observer in state.observers:
        observer.activity_completed(inst, request, response, flight.sent_ns)
    now = now_ns()
    event = orch.activity_result_event(request, response, now)
    refusal = _refusal_if_oversized(inst, request, event)
    if refusal is not None:
        # The activity fails instead, as dapr.ext.workflow's worker fails it when the result
        # cannot be sent at all; the workflow sees a TaskFailedError it may handle.
        event = orch.new_event(
            now,
            taskFailed=pb.TaskFailedEvent(
                taskScheduledId=request.taskId,
                failureDetails=payload.failure(str(refusal)),
                taskExecutionId=request.taskExecutionId,
            ),
        )
    statements = [
        sql.delete_activity(inst.instance_id, flight.task_id),
        state.inbox_row(inst, event),
    ]
    state.dispatch.make_ready(inst)
    # Each held result keeps one of the worker's activity threads waiting for its answer,
    # so a result is held only when it was the instance's last pending activity: a chain's
    # step, not a fan-out's, whose other activities need those threads.
    hold = not inst.activities and state.step_due(inst)
    await state.write(statements, defer_for=inst.instance_id if hold else None)
    if refusal is not None:
        raise refusal  # RESOURCE_EXHAUSTED: the worker's own fallback answer is then stale


def _refusal_if_oversized(
    inst: Instance, request: pb.ActivityRequest, event: pb.HistoryEvent
) -> PayloadTooLarge | None:
    size = payload.instance_bytes(inst) + payload.events_bytes([event])
    if payload.fits(size):
        return None
    return PayloadTooLarge(
        f"the result of activity '{request.name}' (task {request.taskId}) would make workflow "
        f"'{inst.instance_id}' {describe(size)}"
    )
