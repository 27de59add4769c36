"""The real-Dapr fixture itself: private services on free ports, a workflow runs on daprd with
its Redis state store, the API token is enforced, and a daprd restarted keeps its workflows."""

from __future__ import annotations

import urllib.error
import urllib.request

import grpc
import pytest
from dapr.ext.workflow import WorkflowRuntime, WorkflowStatus

from sidecar.tests.harness import WorkflowApp

from .conftest import StartDaprd
from .processes import ControlPlane

FIXED_PORTS = {6379, 50005, 50006, 2379, 2380, 8201, 8080, 9090, 3500, 50001}


def test_control_plane_uses_no_fixed_port(control_plane: ControlPlane) -> None:
    ports = {control_plane.redis.port, control_plane.placement.port, control_plane.scheduler.port}
    argv = " ".join(control_plane.placement.argv + control_plane.scheduler.argv)

    assert not ports & FIXED_PORTS
    assert ":8201" not in argv and ":2380" not in argv and " 2379" not in argv


def test_workflow_runs_on_daprd_with_redis(start_daprd: StartDaprd) -> None:
    daprd = start_daprd()
    app = WorkflowApp(daprd.grpc_address)
    try:

        @app.runtime.activity(name="double")
        def double(ctx, x):
            return x * 2

        @app.runtime.workflow(name="doubler")
        def doubler(ctx, x):
            return (yield ctx.call_activity(double, input=x))

        client = app.start()
        iid = client.schedule_new_workflow(doubler, input=21)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    finally:
        app.close()

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == "42"


def test_api_token_is_enforced(start_daprd: StartDaprd) -> None:
    daprd = start_daprd(api_token="s3cret-token")
    url = f"http://127.0.0.1:{daprd.http_port}/v1.0/metadata"

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    with urllib.request.urlopen(
        urllib.request.Request(url, headers={"dapr-api-token": "s3cret-token"}), timeout=5
    ) as allowed:
        assert allowed.status == 200
    assert refused.value.code == 401
    with grpc.insecure_channel(daprd.grpc_address) as channel:
        hello = channel.unary_unary("/TaskHubSidecarService/Hello")
        with pytest.raises(grpc.RpcError) as no_token:
            hello(b"", timeout=5)
    assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_restarted_daprd_keeps_its_workflows(start_daprd: StartDaprd) -> None:
    daprd = start_daprd()
    app = WorkflowApp(daprd.grpc_address)

    def register(runtime: WorkflowRuntime) -> None:
        @runtime.workflow(name="waiter")
        def waiter(ctx, _):
            return (yield ctx.wait_for_external_event("go"))

    try:
        register(app.runtime)
        client = app.start()
        iid = client.schedule_new_workflow("waiter")
        client.wait_for_workflow_start(iid, timeout_in_seconds=30)
        app.stop_runtime()
        daprd.stop()
        daprd.start()  # same ports, same app id, same Redis
        app.runtime = app.new_runtime()
        register(app.runtime)
        client = app.start(app.runtime)
        client.raise_workflow_event(iid, "go", data="after restart")
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    finally:
        app.close()

    assert state is not None
    assert state.serialized_output == '"after restart"'
