"""Fuzzing a worker's side of the workflow protocol: a hand-driven work-item stream answers each
item it is sent with a random completion (random actions, statuses, ids, timestamps, tokens,
custom status). Every answer is a documented one (oracle.py); afterwards the sidecar is healthy
and a real worker runs a workflow."""

from __future__ import annotations

import itertools
import queue
from typing import Any

from dapr.ext.workflow._durabletask.internal import protos as pb
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.tests.fuzz.oracle import Target, call_grpc, examples
from sidecar.tests.fuzz.strategies import int32s, protobuf_text, timestamps
from sidecar.tests.harness import RawWorker, string_value

_texts = st.none() | protobuf_text
_STATUSES = [
    pb.ORCHESTRATION_STATUS_COMPLETED,
    pb.ORCHESTRATION_STATUS_FAILED,
    pb.ORCHESTRATION_STATUS_TERMINATED,
    pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
    pb.ORCHESTRATION_STATUS_RUNNING,
]


def _sv(text: str | None) -> Any:
    return None if text is None else string_value(text)


def _failure(message: str) -> pb.TaskFailureDetails:
    return pb.TaskFailureDetails(errorType="Fuzz", errorMessage=message)


_raised = st.builds(
    lambda name, data: pb.HistoryEvent(
        eventId=-1, eventRaised=pb.EventRaisedEvent(name=name, input=_sv(data))
    ),
    protobuf_text,
    _texts,
)
_kinds = st.one_of(
    st.builds(
        lambda name, data: {"scheduleTask": pb.ScheduleTaskAction(name=name, input=_sv(data))},
        st.sampled_from(["act"]) | protobuf_text,
        _texts,
    ),
    st.builds(
        lambda at: {"createTimer": pb.CreateTimerAction(fireAt=at)},
        timestamps.filter(lambda t: t is not None),
    ),
    st.builds(lambda: {"createTimer": pb.CreateTimerAction()}),
    st.builds(
        lambda iid, name, data: {
            "createChildWorkflow": pb.CreateChildWorkflowAction(
                instanceId=iid, name=name, input=_sv(data)
            )
        },
        protobuf_text,
        st.sampled_from(["raw"]) | protobuf_text,
        _texts,
    ),
    st.builds(
        lambda status, result, failure, carry: {
            "completeWorkflow": pb.CompleteWorkflowAction(
                workflowStatus=status,  # type: ignore[arg-type]
                result=_sv(result),
                failureDetails=None if failure is None else _failure(failure),
                carryoverEvents=carry,
            )
        },
        st.sampled_from(_STATUSES) | int32s,
        _texts,
        _texts,
        st.lists(_raised, max_size=2),
    ),
    st.builds(
        lambda iid, name: {
            "sendEvent": pb.SendEventAction(instance=pb.WorkflowInstance(instanceId=iid), name=name)
        },
        protobuf_text,
        protobuf_text,
    ),
    st.builds(
        lambda iid: {"terminateWorkflow": pb.TerminateWorkflowAction(instanceId=iid)},
        protobuf_text,
    ),
    st.builds(lambda: {"workflowVersionNotAvailable": pb.WorkflowVersionNotAvailableAction()}),
    st.builds(dict),  # an action of no type
)
_actions = st.lists(
    st.builds(
        lambda action_id, kind: pb.WorkflowAction(id=action_id, **kind),
        st.integers(0, 6) | int32s,
        _kinds,
    ),
    max_size=3,
)


# How to answer an item, drawn before the item is known (Hypothesis wants the same draws
# whatever the sidecar sends): None means "what the item says".
_turn_plans = st.fixed_dictionaries(
    {
        "instance": st.none() | protobuf_text,
        "token": st.none() | protobuf_text | st.just("0-99"),
        "actions": _actions,
        "status": _texts,
    }
)
_activity_plans = st.fixed_dictionaries(
    {
        "instance": st.none() | protobuf_text,
        "task": st.none() | int32s,
        "token": st.none() | protobuf_text,
        "result": _texts,
        "failure": _texts,
    }
)
PLANS = 10  # items answered per example at most


def _turn_answer(item: Any, plan: dict[str, Any]) -> pb.WorkflowResponse:
    return pb.WorkflowResponse(
        instanceId=_or(plan["instance"], item.workflowRequest.instanceId),
        completionToken=_or(plan["token"], item.completionToken),
        actions=plan["actions"],
        customStatus=_sv(plan["status"]),
    )


def _activity_answer(item: Any, plan: dict[str, Any]) -> pb.ActivityResponse:
    request = item.activityRequest
    return pb.ActivityResponse(
        instanceId=_or(plan["instance"], request.workflowInstance.instanceId),
        taskId=_or(plan["task"], request.taskId),
        completionToken=_or(plan["token"], item.completionToken),
        result=_sv(plan["result"]),
        failureDetails=None if plan["failure"] is None else _failure(plan["failure"]),
    )


def _or(planned: Any, given: Any) -> Any:
    return given if planned is None else planned


_numbers = itertools.count()


@settings(max_examples=examples(120))
@given(
    first_input=_texts,
    turn_plans=st.lists(_turn_plans, min_size=PLANS, max_size=PLANS),
    activity_plans=st.lists(_activity_plans, min_size=PLANS, max_size=PLANS),
)
def _worker_example(
    target: Target,
    worker: RawWorker,
    first_input: str | None,
    turn_plans: list[dict[str, Any]],
    activity_plans: list[dict[str, Any]],
) -> None:
    """Start an instance, then answer what the stream sends until that instance's turn has been
    answered (items of earlier examples' instances come in between)."""
    target.tally.examples += 1
    iid = f"fz-w-{next(_numbers)}"
    call_grpc(
        target.taskhub.StartInstance,
        pb.CreateInstanceRequest(instanceId=iid, name="raw", input=_sv(first_input)),
        f"StartInstance {iid}",
        target.tally,
    )
    turns, activities = iter(turn_plans), iter(activity_plans)
    for _ in range(PLANS):
        try:
            item = worker.next_item(timeout=10)
        except queue.Empty:
            break
        if item.HasField("activityRequest"):
            answer = _activity_answer(item, next(activities))
            call_grpc(target.taskhub.CompleteActivityTask, answer, f"{answer}"[:300], target.tally)
            continue
        reply = _turn_answer(item, next(turns))
        call_grpc(target.taskhub.CompleteOrchestratorTask, reply, f"{reply}"[:300], target.tally)
        if item.workflowRequest.instanceId == iid:
            break


def test_fuzz_worker_completions(target: Target) -> None:
    worker = RawWorker(target.taskhub)
    try:
        _worker_example(target, worker)
    finally:
        worker.close()
    target.assert_healthy()
