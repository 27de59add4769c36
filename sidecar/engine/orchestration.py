"""Pure functions of the orchestration state machine: no I/O, no clock of their own, no SQLite.

``apply_turn`` turns one ``WorkflowResponse`` (the actions a worker returned for a dispatched
turn) into the history the turn commits and the work it creates. The engine persists and
dispatches what it returns. The rules are durabletask-go's backend (backend/runtimestate: its
applier turns a worker's actions into history and new work) as daprd's workflow orchestrator
(dapr/dapr pkg/actors/targets/workflow/orchestrator) applies them, which is what the Python SDK
(dapr.ext.workflow) expects; docs/sidecar-internals.md, "Turns", has the details.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine.instance import check_timestamp
from sidecar.engine.status import COMPLETED, FAILED, RUNNING, STALLED, SUSPENDED, TERMINATED
from sidecar.errors import InvalidArgument

TERMINAL_ACTION_STATUSES = {COMPLETED, FAILED, TERMINATED}


def new_event(timestamp_ns: int, **kind: object) -> pb.HistoryEvent:
    """A history event with eventId -1, as durabletask-go's backend stamps events it creates."""
    event = pb.HistoryEvent(eventId=-1, **kind)  # type: ignore[arg-type]
    event.timestamp.FromNanoseconds(timestamp_ns)
    return event


def new_execution_id() -> str:
    return uuid.uuid4().hex


@dataclass
class ChildStart:
    """A child workflow the turn asked for (``createChildWorkflow``)."""

    task_id: int
    instance_id: str
    started: pb.HistoryEvent  # the child's executionStarted


@dataclass
class TurnOutcome:
    """What one turn commits and what it sets in motion."""

    events: list[pb.HistoryEvent]  # appended to history: workflowStarted, inbox, action events
    status: int
    custom_status: str | None
    output: str | None = None
    failure: pb.TaskFailureDetails | None = None
    activities: list[pb.ActivityRequest] = field(default_factory=list)
    timers: list[tuple[int, pb.HistoryEvent]] = field(
        default_factory=list
    )  # (fire_at_ns, timerFired)
    children: list[ChildStart] = field(default_factory=list)
    continued_as_new: pb.CompleteWorkflowAction | None = None
    stall: pb.ExecutionStalledEvent | None = None
    terminate_recursively: bool | None = None  # set when the turn ended by an executionTerminated
    version: pb.WorkflowVersion | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_ACTION_STATUSES


@dataclass
class InstanceView:
    """The parts of an instance's runtime state a turn needs."""

    instance_id: str
    execution_id: str
    name: str
    history: list[pb.HistoryEvent]
    suspended: bool
    # The patches earlier turns recorded (``recorded_patches``); the engine keeps the list up
    # to date so a turn does not rescan a long history. None: derive it from ``history``.
    patches: list[str] | None = None
    version: str | None = None  # the version name the instance runs under, if any


def recorded_patches(history: list[pb.HistoryEvent]) -> list[str]:
    """Every patch the history's workflowStarted events recorded, first seen first."""
    patches: list[str] = []
    for event in history:
        if event.WhichOneof("eventType") == "workflowStarted":
            merge_patches(patches, event.workflowStarted.version.patches)
    return patches


def merge_patches(patches: list[str], new: Iterable[str]) -> None:
    for patch in new:
        if patch not in patches:
            patches.append(patch)


def patch_mismatch(recorded: list[str], response: pb.WorkflowResponse) -> str | None:
    """daprd's rule (dapr/dapr, the workflow orchestrator's stall handling): once patches are
    recorded, those the worker reports must start with them, in order, or the instance stalls
    (PATCH_MISMATCH); e.g. a patch check removed from the code under a running instance.
    Returns daprd's description of the mismatch, or None."""
    if not recorded:
        return None
    current = list(response.version.patches)
    if current[: len(recorded)] == recorded:
        return None
    return (
        f"Patch mismatch. History patches: [{', '.join(recorded)}], "
        f"current patches: [{', '.join(current)}]. "
    )


def apply_turn(
    view: InstanceView,
    started: pb.HistoryEvent,
    dispatched: list[pb.HistoryEvent],
    response: pb.WorkflowResponse,
    now_ns: int,
) -> TurnOutcome:
    """Validate ``response`` against the instance and compute the turn's outcome.

    ``started`` is the turn's workflowStarted event (its timestamp is the workflow clock the
    worker saw); ``dispatched`` are the inbox events that were sent with it. Raises
    ``InvalidArgument`` for actions that do not fit the history; nothing is applied then.
    """
    workflow_started = pb.HistoryEvent()
    workflow_started.CopyFrom(started)
    if response.HasField("version"):
        workflow_started.workflowStarted.version.CopyFrom(response.version)
    events = [workflow_started, *dispatched]

    suspended = view.suspended
    terminated: pb.HistoryEvent | None = None
    for event in dispatched:
        kind = event.WhichOneof("eventType")
        if kind == "executionSuspended":
            suspended = True
        elif kind == "executionResumed":
            suspended = False
        elif kind == "executionTerminated":
            terminated = event

    custom_status = response.customStatus.value if response.HasField("customStatus") else None
    outcome = TurnOutcome(
        events=events,
        status=SUSPENDED if suspended else RUNNING,
        custom_status=custom_status,
        version=response.version if response.HasField("version") else None,
    )
    version_missing = any(
        a.WhichOneof("workflowActionType") == "workflowVersionNotAvailable"
        for a in response.actions
    )
    if terminated is None and not version_missing:
        recorded = view.patches if view.patches is not None else recorded_patches(view.history)
        mismatch = patch_mismatch(recorded, response)
        if mismatch is not None:
            outcome.stall = pb.ExecutionStalledEvent(reason=pb.PATCH_MISMATCH, description=mismatch)
            outcome.status = STALLED
            return outcome
    # An action's id may repeat one of the history's: daprd accepts it (the SDK's replay of
    # code patched under a running instance reuses the id of the optional timer of an event
    # wait), so only ids repeated within this one response are refused.
    new_ids: set[int] = set()
    for action in response.actions:
        kind = action.WhichOneof("workflowActionType")
        if kind is None:
            raise InvalidArgument(f"action {action.id} has no action type")
        if kind == "completeWorkflow":
            done = action.completeWorkflow
            if done.workflowStatus == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW:
                if terminated is not None:
                    break  # a termination in the same turn wins (forced below)
                outcome.continued_as_new = done
                return outcome  # every remaining action is ignored (durabletask-go's applier)
            if done.workflowStatus not in TERMINAL_ACTION_STATUSES:
                raise InvalidArgument(
                    f"completeWorkflow action {action.id} has non-terminal status "
                    f"{done.workflowStatus}"
                )
            completed = new_event(
                now_ns,
                executionCompleted=pb.ExecutionCompletedEvent(
                    workflowStatus=done.workflowStatus,
                    result=done.result if done.HasField("result") else None,
                    failureDetails=done.failureDetails if done.HasField("failureDetails") else None,
                ),
            )
            completed.eventId = action.id
            events.append(completed)
            outcome.status = done.workflowStatus
            outcome.output = done.result.value if done.HasField("result") else None
            outcome.failure = done.failureDetails if done.HasField("failureDetails") else None
            if done.workflowStatus == TERMINATED and terminated is not None:
                outcome.terminate_recursively = terminated.executionTerminated.recurse
            break  # later completions in the same batch are ignored
        if kind == "workflowVersionNotAvailable":
            outcome.stall = pb.ExecutionStalledEvent(
                reason=pb.VERSION_NOT_AVAILABLE,
                description=f"Version not available: {view.version or view.name}",
            )
            outcome.status = STALLED
            return outcome
        if action.id in new_ids:
            raise InvalidArgument(
                f"action id {action.id} is used twice in one response for {view.instance_id!r}"
            )
        new_ids.add(action.id)
        if kind == "scheduleTask":
            events.append(_schedule_task(view, action, now_ns, outcome))
        elif kind == "createTimer":
            events.append(_create_timer(action, now_ns, outcome))
        elif kind == "createChildWorkflow":
            events.append(create_child(view, action, now_ns, outcome))
        else:
            raise InvalidArgument(f"action type {kind!r} is not supported by this sidecar")

    if terminated is not None and not outcome.is_terminal:
        # The worker did not end the instance although the turn carried a termination:
        # force it, as durabletask-go's backend does (backend/orchestration.go).
        reason = terminated.executionTerminated
        output = reason.input.value if reason.HasField("input") else None
        events[len(dispatched) + 1 :] = []
        events.append(
            new_event(
                now_ns,
                executionCompleted=pb.ExecutionCompletedEvent(
                    workflowStatus=TERMINATED, result=reason.input if output is not None else None
                ),
            )
        )
        outcome.status = TERMINATED
        outcome.output = output
        outcome.activities.clear()
        outcome.timers.clear()
        outcome.children.clear()
        outcome.terminate_recursively = reason.recurse
    return outcome


def _schedule_task(
    view: InstanceView, action: pb.WorkflowAction, now_ns: int, outcome: TurnOutcome
) -> pb.HistoryEvent:
    task = action.scheduleTask
    if not task.name:
        raise InvalidArgument(f"scheduleTask action {action.id} has no activity name")
    event = new_event(
        now_ns,
        taskScheduled=pb.TaskScheduledEvent(
            name=task.name,
            version=task.version if task.HasField("version") else None,
            input=task.input if task.HasField("input") else None,
            taskExecutionId=task.taskExecutionId,
        ),
    )
    event.eventId = action.id
    outcome.activities.append(
        pb.ActivityRequest(
            name=task.name,
            version=task.version if task.HasField("version") else None,
            input=task.input if task.HasField("input") else None,
            workflowInstance=pb.WorkflowInstance(
                instanceId=view.instance_id, executionId=_sv(view.execution_id)
            ),
            taskId=action.id,
            taskExecutionId=task.taskExecutionId,
        )
    )
    return event


def _create_timer(action: pb.WorkflowAction, now_ns: int, outcome: TurnOutcome) -> pb.HistoryEvent:
    timer = action.createTimer
    if not timer.HasField("fireAt"):
        raise InvalidArgument(f"createTimer action {action.id} has no fireAt")
    check_timestamp(timer.fireAt, f"the fireAt of createTimer action {action.id}")
    created = pb.TimerCreatedEvent(fireAt=timer.fireAt)
    if timer.HasField("name"):
        created.name = timer.name
    origin = timer.WhichOneof("origin")
    if origin is not None:
        getattr(created, origin).CopyFrom(getattr(timer, origin))
    event = new_event(now_ns, timerCreated=created)
    event.eventId = action.id
    fire_at_ns = timer.fireAt.ToNanoseconds()
    fired = new_event(0, timerFired=pb.TimerFiredEvent(fireAt=timer.fireAt, timerId=action.id))
    outcome.timers.append((fire_at_ns, fired))
    return event


def create_child(
    view: InstanceView, action: pb.WorkflowAction, now_ns: int, outcome: TurnOutcome
) -> pb.HistoryEvent:
    child = action.createChildWorkflow
    if not child.instanceId or not child.name:
        raise InvalidArgument(
            f"createChildWorkflow action {action.id} needs an instance id and a name"
        )
    version = child.version if child.HasField("version") else None
    child_input = child.input if child.HasField("input") else None
    event = new_event(
        now_ns,
        childWorkflowInstanceCreated=pb.ChildWorkflowInstanceCreatedEvent(
            instanceId=child.instanceId, name=child.name, version=version, input=child_input
        ),
    )
    event.eventId = action.id
    started = new_event(
        now_ns,
        executionStarted=pb.ExecutionStartedEvent(
            name=child.name,
            version=version,
            input=child_input,
            workflowInstance=pb.WorkflowInstance(
                instanceId=child.instanceId, executionId=_sv(new_execution_id())
            ),
            parentInstance=pb.ParentInstanceInfo(
                taskScheduledId=action.id,
                name=_sv(view.name),
                workflowInstance=pb.WorkflowInstance(
                    instanceId=view.instance_id, executionId=_sv(view.execution_id)
                ),
            ),
        ),
    )
    outcome.children.append(ChildStart(action.id, child.instanceId, started))
    return event


def child_result_event(
    parent: pb.ParentInstanceInfo,
    status: int,
    output: str | None,
    failure: pb.TaskFailureDetails | None,
    now_ns: int,
) -> pb.HistoryEvent:
    """The event a finished child sends to its parent's inbox (no failure details for a
    terminated child, as in durabletask-go's backend and daprd)."""
    if status == COMPLETED:
        return new_event(
            now_ns,
            childWorkflowInstanceCompleted=pb.ChildWorkflowInstanceCompletedEvent(
                taskScheduledId=parent.taskScheduledId, result=_sv(output)
            ),
        )
    return new_event(
        now_ns,
        childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
            taskScheduledId=parent.taskScheduledId,
            failureDetails=failure if status == FAILED else None,
        ),
    )


def activity_result_event(
    request: pb.ActivityRequest, response: pb.ActivityResponse, now_ns: int
) -> pb.HistoryEvent:
    """taskCompleted or taskFailed for an activity's response (durabletask-go's executor builds
    the same from an ActivityResponse: backend/executor.go)."""
    if response.HasField("failureDetails"):
        return new_event(
            now_ns,
            taskFailed=pb.TaskFailedEvent(
                taskScheduledId=request.taskId,
                failureDetails=response.failureDetails,
                taskExecutionId=request.taskExecutionId,
            ),
        )
    return new_event(
        now_ns,
        taskCompleted=pb.TaskCompletedEvent(
            taskScheduledId=request.taskId,
            result=response.result if response.HasField("result") else None,
            taskExecutionId=request.taskExecutionId,
        ),
    )


def children_of(history: list[pb.HistoryEvent]) -> list[str]:
    """Instance ids of the child workflows a history created, in creation order."""
    return [
        e.childWorkflowInstanceCreated.instanceId
        for e in history
        if e.WhichOneof("eventType") == "childWorkflowInstanceCreated"
    ]


def _sv(value: str | None) -> pb.wrappers_pb2.StringValue | None:
    return None if value is None else pb.wrappers_pb2.StringValue(value=value)
