"""The pure turn logic (``sidecar.engine.orchestration``), without SQLite or gRPC."""

from __future__ import annotations

import pytest
from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine.status import COMPLETED, FAILED, RUNNING, STALLED, SUSPENDED, TERMINATED
from sidecar.errors import InvalidArgument

NOW = 1_700_000_000_000_000_000


def _view(
    history: list[pb.HistoryEvent] | None = None, suspended: bool = False
) -> orch.InstanceView:
    return orch.InstanceView("wf-1", "exec-1", "order", history or [], suspended)


def _started() -> pb.HistoryEvent:
    return orch.new_event(NOW, workflowStarted=pb.WorkflowStartedEvent())


def _execution_started() -> pb.HistoryEvent:
    return orch.new_event(NOW, executionStarted=pb.ExecutionStartedEvent(name="order"))


def _response(*actions: pb.WorkflowAction, custom_status: str | None = None) -> pb.WorkflowResponse:
    response = pb.WorkflowResponse(instanceId="wf-1", actions=list(actions))
    if custom_status is not None:
        response.customStatus.value = custom_status
    return response


def _schedule(action_id: int, name: str = "notify") -> pb.WorkflowAction:
    return pb.WorkflowAction(id=action_id, scheduleTask=pb.ScheduleTaskAction(name=name))


def _complete(action_id: int, status: int, result: str | None = None) -> pb.WorkflowAction:
    done = pb.CompleteWorkflowAction(workflowStatus=status)  # type: ignore[arg-type]
    if result is not None:
        done.result.value = result
    return pb.WorkflowAction(id=action_id, completeWorkflow=done)


def test_apply_turn_schedule_task_records_event_and_activity_request() -> None:
    outcome = orch.apply_turn(
        _view(), _started(), [_execution_started()], _response(_schedule(1)), NOW
    )

    kinds = [e.WhichOneof("eventType") for e in outcome.events]
    assert kinds == ["workflowStarted", "executionStarted", "taskScheduled"]
    assert outcome.events[2].eventId == 1
    assert outcome.status == RUNNING
    assert [(a.name, a.taskId, a.workflowInstance.instanceId) for a in outcome.activities] == [
        ("notify", 1, "wf-1")
    ]


def test_apply_turn_timer_fires_at_requested_time() -> None:
    timer = pb.CreateTimerAction()
    timer.fireAt.FromNanoseconds(NOW + 5_000_000_000)
    outcome = orch.apply_turn(
        _view(), _started(), [], _response(pb.WorkflowAction(id=3, createTimer=timer)), NOW
    )

    assert [(ns, fired.timerFired.timerId) for ns, fired in outcome.timers] == [
        (NOW + 5_000_000_000, 3)
    ]
    assert outcome.events[-1].timerCreated.fireAt.ToNanoseconds() == NOW + 5_000_000_000


def test_apply_turn_complete_ignores_later_actions() -> None:
    outcome = orch.apply_turn(
        _view(), _started(), [], _response(_complete(1, COMPLETED, '"done"'), _schedule(2)), NOW
    )

    assert outcome.status == COMPLETED
    assert outcome.output == '"done"'
    assert outcome.activities == []
    assert outcome.events[-1].WhichOneof("eventType") == "executionCompleted"


def test_apply_turn_failure_keeps_details() -> None:
    action = _complete(4, FAILED)
    action.completeWorkflow.failureDetails.errorType = "TaskFailedError"
    action.completeWorkflow.failureDetails.errorMessage = "payment declined"

    outcome = orch.apply_turn(_view(), _started(), [], _response(action), NOW)

    assert outcome.status == FAILED
    assert outcome.failure is not None
    assert outcome.failure.errorMessage == "payment declined"


def test_apply_turn_action_id_of_an_earlier_event_is_accepted_as_daprd_does() -> None:
    # The SDK's indefinite event wait records a timer (id 2); code patched under the running
    # instance replays and schedules an activity with that same id, which daprd accepts.
    timer = orch.new_event(NOW, timerCreated=pb.TimerCreatedEvent())
    timer.eventId = 2

    outcome = orch.apply_turn(_view([timer]), _started(), [], _response(_schedule(2)), NOW)

    assert [(e.WhichOneof("eventType"), e.eventId) for e in outcome.events[1:]] == [
        ("taskScheduled", 2)
    ]
    assert [a.taskId for a in outcome.activities] == [2]


def test_apply_turn_action_id_twice_in_one_response_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="used twice"):
        orch.apply_turn(_view(), _started(), [], _response(_schedule(1), _schedule(1)), NOW)


def _patched_turn(*patches: str) -> pb.HistoryEvent:
    started = _started()
    started.workflowStarted.version.patches.extend(patches)
    return started


def _reporting(*patches: str) -> pb.WorkflowResponse:
    response = _response(_schedule(5))
    response.version.patches.extend(patches)
    return response


def test_apply_turn_patch_no_longer_reported_stalls_as_daprd_does() -> None:
    view = _view([_execution_started(), _patched_turn("patch1")])

    outcome = orch.apply_turn(view, _started(), [], _reporting(), NOW)

    assert outcome.status == STALLED
    assert outcome.stall is not None
    assert outcome.stall.reason == pb.PATCH_MISMATCH
    assert outcome.stall.description == (
        "Patch mismatch. History patches: [patch1], current patches: []. "
    )
    assert outcome.activities == []


def test_apply_turn_patches_in_another_order_stall() -> None:
    view = _view([_patched_turn("patch2"), _patched_turn("patch1")])

    outcome = orch.apply_turn(view, _started(), [], _reporting("patch1", "patch2"), NOW)

    assert outcome.stall is not None
    assert outcome.stall.description == (
        "Patch mismatch. History patches: [patch2, patch1], current patches: [patch1, patch2]. "
    )


def test_apply_turn_patches_recorded_then_extended_run_on() -> None:
    view = _view([_patched_turn("patch1")])

    extended = orch.apply_turn(view, _started(), [], _reporting("patch1", "patch2"), NOW)
    unpatched = orch.apply_turn(_view(), _started(), [], _reporting(), NOW)

    assert extended.stall is None and extended.status == RUNNING
    assert unpatched.stall is None and unpatched.status == RUNNING


def test_apply_turn_action_without_type_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="no action type"):
        orch.apply_turn(_view(), _started(), [], _response(pb.WorkflowAction(id=1)), NOW)


def test_apply_turn_termination_without_terminal_action_is_forced() -> None:
    terminated = orch.new_event(
        NOW,
        executionTerminated=pb.ExecutionTerminatedEvent(
            input=pb.wrappers_pb2.StringValue(value='"stop"'), recurse=True
        ),
    )
    outcome = orch.apply_turn(_view(), _started(), [terminated], _response(_schedule(1)), NOW)

    assert outcome.status == TERMINATED
    assert outcome.output == '"stop"'
    assert outcome.activities == []
    assert outcome.terminate_recursively is True
    kinds = [e.WhichOneof("eventType") for e in outcome.events]
    assert kinds == ["workflowStarted", "executionTerminated", "executionCompleted"]


def test_apply_turn_suspend_and_resume_set_status() -> None:
    suspended = orch.new_event(NOW, executionSuspended=pb.ExecutionSuspendedEvent())
    outcome = orch.apply_turn(_view(), _started(), [suspended], _response(), NOW)
    assert outcome.status == SUSPENDED

    resumed = orch.new_event(NOW, executionResumed=pb.ExecutionResumedEvent())
    outcome = orch.apply_turn(_view(suspended=True), _started(), [resumed], _response(), NOW)
    assert outcome.status == RUNNING


def test_apply_turn_version_not_available_stalls() -> None:
    action = pb.WorkflowAction(
        id=1, workflowVersionNotAvailable=pb.WorkflowVersionNotAvailableAction()
    )

    outcome = orch.apply_turn(_view(), _started(), [], _response(action), NOW)

    assert outcome.status == STALLED
    assert outcome.stall is not None
    assert outcome.stall.description == "Version not available: order"


def test_apply_turn_child_gets_parent_link() -> None:
    child = pb.CreateChildWorkflowAction(instanceId="wf-1:0001", name="shipment")
    outcome = orch.apply_turn(
        _view(), _started(), [], _response(pb.WorkflowAction(id=1, createChildWorkflow=child)), NOW
    )

    (start,) = outcome.children
    parent = start.started.executionStarted.parentInstance
    assert start.instance_id == "wf-1:0001"
    assert parent.taskScheduledId == 1
    assert parent.workflowInstance.instanceId == "wf-1"


def test_apply_turn_custom_status_replaces_previous() -> None:
    outcome = orch.apply_turn(_view(), _started(), [], _response(custom_status="waiting"), NOW)
    assert outcome.custom_status == "waiting"

    outcome = orch.apply_turn(_view(), _started(), [], _response(), NOW)
    assert outcome.custom_status is None
