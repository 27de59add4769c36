"""Size limits: whatever is too large fails at the door or fails its own instance; every other
instance keeps running, and no worker stream is ever sent an item it cannot take.

The limits are daprd's (``--max-body-size``, 4 MiB; its orchestrator's 95% threshold for a
work item: sidecar/limits.py). Each scenario runs with one worker connected the whole time and
ends with 100 ordinary workflows completing and the worker's stream opened exactly once (the
bug this guards against broke the stream and reopened it ~77 times a second).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr.ext.workflow import DaprWorkflowClient, TaskFailedError, WorkflowStatus
from dapr.ext.workflow._durabletask.internal import protos as pb
from dapr.proto import api_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from sidecar import Sidecar
from sidecar.limits import MAX_BODY_BYTES, WORK_ITEM_LIMIT_BYTES
from sidecar.tests.harness import (
    WAIT,
    WorkflowApp,
    error_info_reason,
    sidecar_start,
    string_value,
)

MB = 1_000_000


class Probe:
    """A sidecar with HTTP, a worker that knows the workflows below, and a count of the
    worker's stream opens."""

    def __init__(self, sidecar: Sidecar, app: WorkflowApp) -> None:
        self.sidecar = sidecar
        self.app = app
        self.stream_opens = 0
        self.activity_runs: dict[tuple[str, int], int] = {}
        engine = sidecar.engine
        assert engine is not None
        open_stream = engine.open_stream

        def counting_open(capabilities: Any) -> Any:
            self.stream_opens += 1
            return open_stream(capabilities)

        engine.open_stream = counting_open  # type: ignore[method-assign]
        self._register()
        self.client: DaprWorkflowClient = app.start()

    def _register(self) -> None:
        runtime = self.app.runtime
        runs = self.activity_runs

        @runtime.activity(name="make_text")
        def make_text(ctx, size: int) -> str:
            key = (ctx.workflow_id, ctx.task_id)
            runs[key] = runs.get(key, 0) + 1
            return "r" * size

        @runtime.workflow(name="waits")
        def waits(ctx, _):
            first = yield ctx.wait_for_external_event("go")
            return first

        @runtime.workflow(name="ordinary")
        def ordinary(ctx, n: int):
            text = yield ctx.call_activity(make_text, input=3)
            return f"{n}:{text}"

        @runtime.workflow(name="catches_big_result")
        def catches_big_result(ctx, size: int):
            try:
                yield ctx.call_activity(make_text, input=size)
            except TaskFailedError as failure:
                return f"caught: {failure}"
            return "not caught"

        @runtime.workflow(name="grows")
        def grows(ctx, sizes: list[int]):
            for size in sizes:
                yield ctx.call_activity(make_text, input=size)
            return "grew"

        @runtime.workflow(name="big_status")
        def big_status(ctx, size: int):
            ctx.set_custom_status("s" * size)
            yield ctx.wait_for_external_event("go")

        @runtime.workflow(name="child_returns")
        def child_returns(ctx, size: int):
            return "c" * size

        @runtime.workflow(name="parent_of_big_child")
        def parent_of_big_child(ctx, sizes: list[int]):
            yield ctx.call_activity(make_text, input=sizes[0])
            yield ctx.call_child_workflow(child_returns, input=sizes[1], instance_id="big-child")
            return "parent done"

    def http(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        from http.client import HTTPConnection

        conn = HTTPConnection("127.0.0.1", self.sidecar.http_port or 0, timeout=WAIT)
        try:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
        finally:
            conn.close()

    def everyone_else_runs(self) -> None:
        """100 ordinary workflows started now all complete; the worker never reconnected."""
        ids = [
            self.client.schedule_new_workflow("ordinary", input=n, instance_id=f"ordinary-{n}")
            for n in range(100)
        ]
        for n, iid in enumerate(ids):
            state = self.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
            assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
            assert state.serialized_output == json.dumps(f"{n}:rrr")
        assert self.stream_opens == 1

    def terminate_and_purge(self, iid: str) -> None:
        self.client.terminate_workflow(iid)
        state = self.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED
        self.purge(iid)

    def purge(self, iid: str) -> None:
        self.client.purge_workflow(iid)
        assert self.client.get_workflow_state(iid) is None


@pytest.fixture
def sidecar(db_path: Path) -> Iterator[Sidecar]:
    sc = sidecar_start(db_path, http_port=0)
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def probe(sidecar: Sidecar, app: WorkflowApp) -> Probe:
    return Probe(sidecar, app)


def _failure_of(probe: Probe, iid: str) -> Any:
    state = probe.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    return state.failure_details


# -- at the door ------------------------------------------------------------------------------


def test_grpc_start_over_the_body_limit_is_refused(probe: Probe) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        probe.client.schedule_new_workflow("waits", input="x" * (4_200_000), instance_id="big")

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert probe.client.get_workflow_state("big") is None
    probe.everyone_else_runs()


def test_grpc_start_whose_first_work_item_would_not_fit_is_refused(probe: Probe) -> None:
    # Under the body limit, so gRPC takes it, but over the 95% a work item may use.
    with pytest.raises(grpc.RpcError) as refused:
        probe.client.schedule_new_workflow("waits", input="x" * 4_100_000, instance_id="big")

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"over the limit of {WORK_ITEM_LIMIT_BYTES:,} bytes" in str(refused.value.details())
    assert probe.client.get_workflow_state("big") is None
    probe.everyone_else_runs()


def test_http_start_of_4194300_bytes_is_refused(probe: Probe) -> None:
    body = b'"' + b"x" * (4_194_300 - 2) + b'"'

    status, error = probe.http("POST", "/v1.0/workflows/dapr/waits/start?instanceID=big", body)
    over_status, over_error = probe.http(
        "POST", "/v1.0/workflows/dapr/waits/start?instanceID=big", b"x" * (MAX_BODY_BYTES + 1)
    )

    assert status == 413 and error["errorCode"] == "ERR_START_WORKFLOW"
    assert "over the limit" in error["message"]
    assert over_status == 400
    assert over_error == {
        "errorCode": "ERR_BODY_READ",
        "message": "failed to read request body: stream too large",
    }
    assert probe.client.get_workflow_state("big") is None
    probe.everyone_else_runs()


def test_two_events_of_2_2_mb_the_second_is_refused_and_the_instance_lives(probe: Probe) -> None:
    iid = probe.client.schedule_new_workflow("waits", instance_id="events")
    probe.client.raise_workflow_event(iid, "other", data="e" * (2_200_000))
    with pytest.raises(grpc.RpcError) as refused:
        probe.client.raise_workflow_event(iid, "other", data="e" * (2_200_000))
    status, error = probe.http(
        "POST", f"/v1.0/workflows/dapr/{iid}/raiseEvent/other", b'"' + b"e" * 2_200_000 + b'"'
    )

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "event 'other' would make workflow 'events'" in str(refused.value.details())
    assert status == 413 and error["errorCode"] == "ERR_RAISE_EVENT_WORKFLOW"
    probe.everyone_else_runs()
    # The instance still runs: it takes a small event and completes with it.
    probe.client.raise_workflow_event(iid, "go", data="small")
    state = probe.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"small"'
    probe.purge(iid)


def test_terminate_and_purge_work_on_an_instance_at_the_limit(probe: Probe) -> None:
    iid = probe.client.schedule_new_workflow("waits", input="i" * 3_900_000, instance_id="full")
    with pytest.raises(grpc.RpcError) as refused:
        probe.client.terminate_workflow(iid, output="o" * 100_000)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    probe.terminate_and_purge(iid)  # without an output a termination is always taken
    probe.everyone_else_runs()


# -- later: from the worker -------------------------------------------------------------------


def test_activity_result_that_would_not_fit_fails_the_activity_once(probe: Probe) -> None:
    iid = probe.client.schedule_new_workflow(
        "catches_big_result", input=4_000_000, instance_id="big-result"
    )
    state = probe.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    output = json.loads(state.serialized_output)
    assert output.startswith("caught: ") and "over the limit" in output
    assert list(probe.activity_runs.values()) == [1]
    probe.purge(iid)
    probe.everyone_else_runs()


def test_activity_result_over_the_body_limit_fails_the_activity_once(probe: Probe) -> None:
    # Too large for gRPC itself: the sidecar refuses it unread, and the SDK reports a failure.
    iid = probe.client.schedule_new_workflow(
        "catches_big_result", input=4_300_000, instance_id="huge-result"
    )
    state = probe.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output).startswith("caught: ")
    assert list(probe.activity_runs.values()) == [1]
    probe.everyone_else_runs()


def test_history_that_grows_past_the_limit_fails_its_instance(probe: Probe) -> None:
    iid = probe.client.schedule_new_workflow(
        "grows", input=[1_500_000, 1_500_000, 1_500_000, 10], instance_id="grows"
    )
    failure = _failure_of(probe, iid)

    assert "over the limit" in failure.message
    # Three ran once each; the third's result failed it, so the fourth was never scheduled.
    assert list(probe.activity_runs.values()) == [1, 1, 1]
    probe.purge(iid)
    probe.everyone_else_runs()


def test_custom_status_that_would_not_fit_fails_its_instance(probe: Probe) -> None:
    iid = probe.client.schedule_new_workflow("big_status", input=4_000_000, instance_id="status")
    failure = _failure_of(probe, iid)

    assert failure.error_type == "PayloadSizeExceeded"
    assert "this turn's actions and custom status would make workflow 'status'" in failure.message
    probe.purge(iid)
    probe.everyone_else_runs()


def test_child_result_that_would_not_fit_fails_the_parent_without_sending_it(
    probe: Probe,
) -> None:
    iid = probe.client.schedule_new_workflow(
        "parent_of_big_child", input=[2_500_000, 2_000_000], instance_id="parent"
    )
    failure = _failure_of(probe, iid)
    child = probe.client.wait_for_workflow_completion("big-child", timeout_in_seconds=WAIT)

    assert failure.error_type == "PayloadSizeExceeded"
    assert "the next work item of workflow 'parent' would be" in failure.message
    assert child is not None and child.runtime_status == WorkflowStatus.COMPLETED
    probe.purge(iid)
    probe.everyone_else_runs()


def test_a_raw_start_refusal_changes_nothing(probe: Probe, stub: Any) -> None:
    """The same through the protocol's own message, with the scheduled start path too."""
    request = pb.CreateInstanceRequest(
        instanceId="raw-big", name="waits", input=string_value("x" * 4_000_000)
    )
    request.scheduledStartTimestamp.GetCurrentTime()
    with pytest.raises(grpc.RpcError) as refused:
        stub.StartInstance(request, timeout=WAIT)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert probe.client.get_workflow_state("raw-big") is None


def test_dapr_api_start_whose_first_work_item_would_not_fit_is_refused(probe: Probe) -> None:
    with grpc.insecure_channel(probe.sidecar.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            dapr_pb2_grpc.DaprStub(channel).StartWorkflowBeta1(
                api_v1.StartWorkflowRequest(
                    instance_id="big", workflow_name="waits", input=b"x" * 4_100_000
                ),
                timeout=WAIT,
            )

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info_reason(refused.value) == "ERR_START_WORKFLOW"
    assert probe.client.get_workflow_state("big") is None
