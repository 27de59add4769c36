"""Activity results: a worker's answer to an activity becomes an event in its instance's inbox.

Activities run at least once (a stream that ends hands its activities out again), so a result
that answers no activity in flight (stale, duplicate, from an earlier generation) is dropped
and the call still succeeds, as daprd does.
"""

from __future__ import annotations

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine.instance import now_ns
from sidecar.engine.state import EngineState
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
    event = orch.activity_result_event(request, response, now_ns())
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
