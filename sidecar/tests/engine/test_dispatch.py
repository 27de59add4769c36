"""The dispatcher's bookkeeping of queued turns (``sidecar.engine.dispatch``), without gRPC."""

from __future__ import annotations

import asyncio

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine.dispatch import Dispatcher
from sidecar.engine.instance import Instance, now_ns
from sidecar.engine.status import PENDING, RUNNING

AN_HOUR_NS = 3600 * 10**9


def _instance(execution_id: str, status: int, **fields: object) -> Instance:
    started = orch.new_event(now_ns(), executionStarted=pb.ExecutionStartedEvent(name="wf"))
    return Instance("wf-1", "wf", execution_id, status, 0, 0, inbox=[(1, started)], **fields)  # type: ignore[arg-type]


def test_a_queued_turn_goes_out_once_a_worker_connects() -> None:
    async def scenario() -> list[pb.WorkItem | None]:
        instances: dict[str, Instance] = {}
        dispatch = Dispatcher(instances, max_outstanding_per_stream=10)
        inst = instances["wf-1"] = _instance("e1", RUNNING)
        dispatch.make_ready(inst)
        stream = dispatch.open_stream([])
        await asyncio.sleep(0)  # the pump runs
        assert dispatch.turn_of("wf-1") is not None
        return [stream.queue.get_nowait() for _ in range(stream.queue.qsize())]

    items = asyncio.run(scenario())
    assert [item.workflowRequest.instanceId for item in items if item is not None] == ["wf-1"]


def test_a_new_instance_of_an_evicted_queued_id_is_not_queued_with_it() -> None:
    # An instance ended (and was evicted) while its turn waited for a worker; its ID is started
    # again with a start time an hour away. When a worker connects, nothing may be sent.
    async def scenario() -> tuple[int, bool]:
        instances: dict[str, Instance] = {}
        dispatch = Dispatcher(instances, max_outstanding_per_stream=10)
        old = instances["wf-1"] = _instance("e1", RUNNING)
        dispatch.make_ready(old)
        old.done = True
        del instances["wf-1"]
        new = instances["wf-1"] = _instance("e2", PENDING, scheduled_start_ns=now_ns() + AN_HOUR_NS)
        dispatch.make_ready(new)  # refused: its start time has not come
        stream = dispatch.open_stream([])
        await asyncio.sleep(0)  # the pump runs
        return stream.queue.qsize(), dispatch.turn_due(new)

    sent, due = asyncio.run(scenario())
    assert sent == 0
    assert not due
