"""Pure: how large an instance's next work item would be, measured against
``sidecar.limits.WORK_ITEM_LIMIT_BYTES``, and the failure that ends an instance whose work
cannot fit.

What is measured is what daprd's orchestrator measures (dapr/dapr pkg/actors/targets/workflow/
orchestrator/payloadsize.go): every event of the current generation's history and of the inbox,
here each framed as it is in a ``WorkflowRequest``; plus the custom status, which is in no work
item but in every read of the instance, so that reads of it fit one message too.

Where a payload arrives from a client (a start, an event, a reason, a termination's output) it
is refused before anything changes (``check_room`` raises ``PayloadTooLarge``). Where it arrives
from a worker (an activity's result, a turn's actions and custom status) the unit of work that
produced it fails instead: the activity with a ``taskFailed``, the turn by ending the instance
FAILED; both with ``FAILURE_TYPE`` and a message that gives the sizes. daprd stalls such an
instance instead (STALLED, reason PAYLOAD_SIZE_EXCEEDED: "increase daprd --max-body-size and
restart"), which it then cannot terminate; here nothing can raise the limit, so the instance
ends, and terminate and purge work on it as on any other.
"""

from __future__ import annotations

from collections.abc import Iterable

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine.instance import Instance
from sidecar.engine.status import FAILED
from sidecar.errors import PayloadTooLarge
from sidecar.limits import WORK_ITEM_LIMIT_BYTES, describe, framed_size, text_size

FAILURE_TYPE = "PayloadSizeExceeded"


def history_bytes(inst: Instance) -> int:
    """The history's framed size. Memoised per generation: a generation's history only grows
    (continue-as-new starts a new list under a new execution id), so only new events are
    measured."""
    memo = inst.measured_history
    counted, total = 0, 0
    if memo is not None and memo[0] == inst.execution_id and memo[1] <= len(inst.history):
        counted, total = memo[1], memo[2]
    for event in inst.history[counted:]:
        total += framed_size(event)
    inst.measured_history = (inst.execution_id, len(inst.history), total)
    return total


def inbox_bytes(inst: Instance) -> int:
    """The inbox's framed size. Memoised: an inbox only grows at its end and is consumed from
    its front, and its row ids only increase, so an unchanged first row id means only new rows
    need measuring."""
    if not inst.inbox:
        return 0
    head = inst.inbox[0][0]
    memo = inst.measured_inbox
    counted, total = 0, 0
    if memo is not None and memo[0] == head and memo[1] <= len(inst.inbox):
        counted, total = memo[1], memo[2]
    for _, event in inst.inbox[counted:]:
        total += framed_size(event)
    inst.measured_inbox = (head, len(inst.inbox), total)
    return total


def instance_bytes(inst: Instance) -> int:
    """What the instance's next work item (and a read of it) carries, in bytes."""
    return history_bytes(inst) + inbox_bytes(inst) + text_size(inst.custom_status)


def events_bytes(events: Iterable[pb.HistoryEvent]) -> int:
    return sum(framed_size(event) for event in events)


def fits(size: int) -> bool:
    return size <= WORK_ITEM_LIMIT_BYTES


def check_room(inst: Instance, events: Iterable[pb.HistoryEvent], what: str) -> None:
    """Refuse ``events`` (a client's) if the instance's next work item would not fit with them."""
    size = instance_bytes(inst) + events_bytes(events)
    if not fits(size):
        raise PayloadTooLarge(f"{what} would make workflow '{inst.instance_id}' {describe(size)}")


def check_first_work_item(instance_id: str, started: pb.HistoryEvent) -> None:
    """Refuse a start whose first work item (its executionStarted) would not fit."""
    size = framed_size(started)
    if not fits(size):
        raise PayloadTooLarge(f"the input of workflow '{instance_id}' makes it {describe(size)}")


def failure(message: str) -> pb.TaskFailureDetails:
    """The failure of a unit of work whose payload would not fit (never retried: it cannot)."""
    return pb.TaskFailureDetails(errorType=FAILURE_TYPE, errorMessage=message, isNonRetriable=True)


def turn_bytes(inst: Instance, dispatched: list[pb.HistoryEvent], outcome: orch.TurnOutcome) -> int:
    """The instance's size once a worker's turn is committed: the events it carried move from
    the inbox to the history, the turn's own events join them; a new generation (continue-as-new)
    starts from its input, the carried-over events and the unread inbox."""
    unread = inbox_bytes(inst) - events_bytes(dispatched)
    done = outcome.continued_as_new
    if done is not None:
        new_input = done.result.value if done.HasField("result") else None
        return unread + text_size(new_input) + events_bytes(done.carryoverEvents)
    added = events_bytes([outcome.events[0], *outcome.events[1 + len(dispatched) :]])
    return (
        history_bytes(inst)
        + unread
        + events_bytes(dispatched)
        + added
        + text_size(outcome.custom_status)
    )


def failed_outcome(
    events: list[pb.HistoryEvent], message: str, now_ns: int, custom_status: str | None
) -> orch.TurnOutcome:
    """A turn that ends the instance FAILED after ``events`` (its workflowStarted and whatever
    it carried), with ``failure(message)``; the custom status stays what it was."""
    details = failure(message)
    completed = orch.new_event(
        now_ns,
        executionCompleted=pb.ExecutionCompletedEvent(
            workflowStatus=FAILED, failureDetails=details
        ),
    )
    return orch.TurnOutcome(
        events=[*events, completed], status=FAILED, custom_status=custom_status, failure=details
    )
