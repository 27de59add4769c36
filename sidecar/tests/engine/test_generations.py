"""The pure history of a new generation (``sidecar.engine.generations``), without SQLite or gRPC."""

from __future__ import annotations

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import generations
from sidecar.engine import orchestration as orch

NOW = 1_700_000_000_000_000_000


def _view() -> orch.InstanceView:
    return orch.InstanceView("wf-1", "exec-1", "order", [], False)


def test_continue_as_new_keeps_parent_and_carries_events() -> None:
    done = pb.CompleteWorkflowAction(workflowStatus=pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW)
    done.result.value = "4"
    done.carryoverEvents.append(orch.new_event(NOW, eventRaised=pb.EventRaisedEvent(name="tick")))
    parent = pb.ParentInstanceInfo(taskScheduledId=7)

    execution_id, events = generations.continue_as_new_events(_view(), parent, done, NOW)

    assert execution_id != "exec-1"
    assert [e.WhichOneof("eventType") for e in events] == ["executionStarted", "eventRaised"]
    assert events[0].executionStarted.input.value == "4"
    assert events[0].executionStarted.parentInstance.taskScheduledId == 7
