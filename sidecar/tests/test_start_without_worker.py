"""A start returns once the instance is on disk, whether or not a worker is connected, on every
way in (the SDK's StartInstance, the Dapr API's StartWorkflow over gRPC and HTTP); the workflow
runs once a worker connects.

daprd blocks such a start until a worker connects (its workflow actors exist only then), and
the SDK's ``schedule_new_workflow`` sets no deadline, so a client there waits indefinitely; the
embedded sidecar does not (docs/sidecar-apis.md, "Starting without a worker").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus
from dapr.proto import api_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from sidecar import Sidecar
from sidecar.tests.harness import WAIT, WorkflowApp, sidecar_start


@pytest.fixture
def sidecar(db_path: Path) -> Iterator[Sidecar]:
    sc = sidecar_start(db_path, http_port=0)
    try:
        yield sc
    finally:
        sc.stop()


def _returns(call: threading.Thread, done: threading.Event) -> bool:
    call.start()
    return done.wait(WAIT)


def test_schedule_new_workflow_without_a_worker_returns_and_runs_later(
    app: WorkflowApp, sidecar: Sidecar
) -> None:
    @app.runtime.workflow(name="later")
    def later(ctx, value: int):
        return value * 2

    client = app.client
    done = threading.Event()
    box: dict[str, object] = {}

    def schedule() -> None:
        box["id"] = client.schedule_new_workflow(later, input=21, instance_id="later-1")
        done.set()

    returned = _returns(threading.Thread(target=schedule, daemon=True), done)
    pending = client.get_workflow_state("later-1")
    assert sidecar.engine is not None and sidecar.engine.connected_workers == 0
    app.start()
    state = client.wait_for_workflow_completion("later-1", timeout_in_seconds=WAIT)

    assert returned and box["id"] == "later-1"
    assert pending is not None and pending.runtime_status == WorkflowStatus.PENDING
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == "42"


def test_dapr_api_starts_without_a_worker_return_over_grpc_and_http(
    app: WorkflowApp, sidecar: Sidecar
) -> None:
    @app.runtime.workflow(name="later")
    def later(ctx, value: int):
        return value + 1

    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        dapr = dapr_pb2_grpc.DaprStub(channel)
        grpc_reply = dapr.StartWorkflowBeta1(
            api_v1.StartWorkflowRequest(
                instance_id="over-grpc",
                workflow_component="dapr",
                workflow_name="later",
                input=b"1",
            ),
            timeout=WAIT,
        )
    conn = HTTPConnection("127.0.0.1", sidecar.http_port or 0, timeout=WAIT)
    try:
        conn.request("POST", "/v1.0/workflows/dapr/later/start?instanceID=over-http", body=b"2")
        http_status = conn.getresponse().status
    finally:
        conn.close()
    app.start()
    over_grpc = app.client.wait_for_workflow_completion("over-grpc", timeout_in_seconds=WAIT)
    over_http = app.client.wait_for_workflow_completion("over-http", timeout_in_seconds=WAIT)

    assert grpc_reply.instance_id == "over-grpc" and http_status == 202
    assert over_grpc is not None and over_grpc.serialized_output == "2"
    assert over_http is not None and over_http.serialized_output == "3"
