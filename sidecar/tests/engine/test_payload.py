"""engine/payload.py: what it measures bounds what a worker is sent, and its memos stay right."""

from __future__ import annotations

import pytest
from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine import payload
from sidecar.engine.instance import Instance, string_value
from sidecar.errors import PayloadTooLarge
from sidecar.limits import MAX_BODY_BYTES, WORK_ITEM_LIMIT_BYTES


def _instance(history: list[pb.HistoryEvent], inbox: list[pb.HistoryEvent]) -> Instance:
    return Instance(
        instance_id="wf-1",
        name="wf",
        execution_id="exec-1",
        status=pb.ORCHESTRATION_STATUS_RUNNING,
        created_ns=0,
        updated_ns=0,
        history=history,
        inbox=list(enumerate(inbox, start=1)),
    )


def _raised(data: str) -> pb.HistoryEvent:
    return orch.new_event(1, eventRaised=pb.EventRaisedEvent(name="e", input=string_value(data)))


def _work_item(inst: Instance) -> pb.WorkItem:
    """The item dispatch sends a cold worker (engine/dispatch.py, _send_turn)."""
    request = pb.WorkflowRequest(instanceId=inst.instance_id, executionId=string_value("exec-1"))
    request.pastEvents.extend(inst.history)
    request.newEvents.append(orch.new_event(2, workflowStarted=pb.WorkflowStartedEvent()))
    request.newEvents.extend(e for _, e in inst.inbox)
    return pb.WorkItem(workflowRequest=request, completionToken="boot-1")


def test_measure_bounds_the_work_item_a_worker_is_sent() -> None:
    history = [_raised("x" * n) for n in (0, 1, 127, 128, 20_000, 300_000)]
    inst = _instance(history, [_raised("y" * 2_000_000), _raised("")])

    measured = payload.instance_bytes(inst)
    sent = _work_item(inst).ByteSize()

    # Every event is counted with its framing; what is left is the ids, the token and the
    # workflowStarted event, which the 5% of headroom under the body limit is for.
    assert measured <= sent <= measured + 200
    assert WORK_ITEM_LIMIT_BYTES + 200 < MAX_BODY_BYTES


def test_memos_follow_appends_consumption_and_a_new_generation() -> None:
    inst = _instance([_raised("a" * 10)], [_raised("b" * 20), _raised("c" * 30)])
    first = payload.instance_bytes(inst)

    inst.history.append(_raised("d" * 1000))
    inst.inbox.append((3, _raised("e" * 500)))
    grown = payload.instance_bytes(inst)
    assert (
        grown == payload.events_bytes([*inst.history, *(e for _, e in inst.inbox)])
        and grown > first
    )

    inst.inbox = inst.inbox[1:]  # a turn consumed the first row
    assert payload.inbox_bytes(inst) == payload.events_bytes(e for _, e in inst.inbox)

    inst.execution_id, inst.history = "exec-2", [_raised("f")]  # continue-as-new
    assert payload.history_bytes(inst) == payload.events_bytes(inst.history)


def test_check_room_refuses_what_would_not_fit_and_says_how_large() -> None:
    inst = _instance([_raised("x" * 2_200_000)], [])
    payload.check_room(inst, [_raised("y" * 1_000_000)], "event 'small'")

    with pytest.raises(PayloadTooLarge) as refused:
        payload.check_room(inst, [_raised("y" * 2_200_000)], "event 'big'")

    assert refused.value.code == "RESOURCE_EXHAUSTED"
    assert "event 'big' would make workflow 'wf-1'" in str(refused.value)
    assert f"over the limit of {WORK_ITEM_LIMIT_BYTES:,} bytes" in str(refused.value)
