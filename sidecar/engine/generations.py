"""Pure functions that start a workflow's next history: the new generation of a continue-as-new
and the history a rerun starts from. No I/O, no clock of their own, as ``orchestration.py``.

Continue-as-new replaces the history with a new execution (durabletask-go's backend applies it
so; daprd bumps the generation), carrying the events the worker asked for and the unread inbox,
but no result addressed to the old generation. A rerun copies a terminal instance's history up
to one event and marks that event to run again (daprd's RerunWorkflowFromEvent).
"""

from __future__ import annotations

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine.instance import string_value
from sidecar.engine.orchestration import InstanceView, new_event, new_execution_id
from sidecar.errors import InvalidArgument, NotFound

# Results addressed to the previous generation: action ids restart at 1 in every generation, so
# carrying them over would hand an old result to a new task (daprd drops an older generation's
# timers the same way: dapr/dapr pkg/actors/targets/workflow/orchestrator).
OLD_GENERATION_RESULTS = frozenset(
    {
        "taskCompleted",
        "taskFailed",
        "timerFired",
        "childWorkflowInstanceCompleted",
        "childWorkflowInstanceFailed",
    }
)


def continue_as_new_events(
    view: InstanceView,
    parent: pb.ParentInstanceInfo | None,
    done: pb.CompleteWorkflowAction,
    now_ns: int,
) -> tuple[str, list[pb.HistoryEvent]]:
    """The new generation's first inbox events: executionStarted, then carried-over events."""
    execution_id = new_execution_id()
    started = pb.ExecutionStartedEvent(
        name=view.name,
        input=done.result if done.HasField("result") else None,
        workflowInstance=pb.WorkflowInstance(
            instanceId=view.instance_id, executionId=string_value(execution_id)
        ),
    )
    if done.HasField("newVersion"):
        started.version.CopyFrom(done.newVersion)
    if parent is not None:
        started.parentInstance.CopyFrom(parent)
    return execution_id, [new_event(now_ns, executionStarted=started), *done.carryoverEvents]


def next_generation_inbox(
    first: list[pb.HistoryEvent], suspended: bool, unread: list[pb.HistoryEvent]
) -> list[pb.HistoryEvent]:
    """The new generation's inbox: its start and carried events, a suspension the old one was
    under, then what arrived meanwhile except results meant for the old generation."""
    inbox = list(first[:1])
    if suspended:
        now_ns = first[0].timestamp.ToNanoseconds()
        inbox.append(new_event(now_ns, executionSuspended=pb.ExecutionSuspendedEvent()))
    inbox.extend(first[1:])
    inbox.extend(e for e in unread if e.WhichOneof("eventType") not in OLD_GENERATION_RESULTS)
    return inbox


RERUNNABLE = ("taskScheduled", "timerCreated", "childWorkflowInstanceCreated")


def rerun_history(
    history: list[pb.HistoryEvent],
    source_id: str,
    event_id: int,
    new_id: str,
    *,
    input: str | None,
    overwrite_input: bool,
    new_child_instance_id: str | None,
) -> list[pb.HistoryEvent]:
    """The history a rerun starts from: everything before the target event, then the target
    marked as rerun (daprd's RerunWorkflowFromEvent: dapr/dapr
    pkg/actors/targets/workflow/orchestrator, rerun.go and fork/)."""
    index = next(
        (i for i, e in enumerate(history) if event_id >= 0 and e.eventId == event_id), None
    )
    if index is None:
        # daprd 1.18's text, which leaves the source instance id out.
        raise NotFound(f"does not have history event with ID '{event_id}'")
    target = pb.HistoryEvent()
    target.CopyFrom(history[index])
    kind = target.WhichOneof("eventType")
    if kind not in RERUNNABLE:
        raise NotFound(
            f"target event '{kind}' with ID '{event_id}' is not an event that can be rerun"
        )
    if overwrite_input and kind == "timerCreated":
        raise InvalidArgument("cannot overwrite the input of a timer event")
    if new_child_instance_id is not None and kind != "childWorkflowInstanceCreated":
        raise InvalidArgument("a new child instance id needs a child workflow target event")
    body = getattr(target, kind)
    body.rerunParentInstanceInfo.CopyFrom(pb.RerunParentInstanceInfo(instanceID=source_id))
    if overwrite_input:
        if input is None:
            body.ClearField("input")
        else:
            body.input.value = input
    if kind == "childWorkflowInstanceCreated":
        body.instanceId = new_child_instance_id or f"{new_id}:{event_id:04x}"
    return [*history[:index], target]
