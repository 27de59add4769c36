"""The Dapr runtime gRPC API (``dapr.proto.runtime.v1.Dapr``): state through the real
``DaprClient``, workflow Alpha1/Beta1 methods through the raw stub, metadata, the API token.

The sidecar runs with its HTTP port too, because ``DaprClient`` waits for ``/healthz/outbound``
before its first call, exactly as an app against daprd does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateOptions
from dapr.ext.workflow import WorkflowActivityContext, WorkflowStatus
from dapr.proto import api_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from sidecar import Sidecar
from sidecar.dapr.metadata import runtime_metadata
from sidecar.dapr.state_store import StateStore
from sidecar.storage.store import Store
from sidecar.tests.harness import WAIT, WorkflowApp, wait_until


def start_sidecar(db_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> Sidecar:
    sc = Sidecar(db_path=str(db_path), grpc_port=0, http_port=0, **kwargs)  # type: ignore[arg-type]
    sc.start()
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_GRPC_PORT", str(sc.grpc_port))
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
    return sc


@pytest.fixture
def sidecar(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sidecar]:
    sc = start_sidecar(db_path, monkeypatch)
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def dapr(sidecar: Sidecar) -> Iterator[DaprClient]:
    with DaprClient() as client:
        yield client


@pytest.fixture
def runtime_stub(sidecar: Sidecar) -> Iterator[dapr_pb2_grpc.DaprStub]:
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        yield dapr_pb2_grpc.DaprStub(channel)


def rpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


# -- a program in the quickstart's shape: inventory in the state store, a workflow updates it --


def test_inventory_workflow_updates_state_store(app: WorkflowApp) -> None:
    store = "statestore"

    def buy_activity(ctx: WorkflowActivityContext, order: dict[str, object]) -> int:
        with DaprClient() as d:
            item = json.loads(d.get_state(store, str(order["item"])).data)
            item["quantity"] -= int(order["quantity"])  # type: ignore[call-overload]
            d.save_state(store, str(order["item"]), json.dumps(item))
        return int(item["quantity"])

    @app.runtime.workflow(name="purchase_workflow")
    def purchase_workflow(ctx, order):  # type: ignore[no-untyped-def]
        left = yield ctx.call_activity(buy_activity, input=order)
        return {"processed": True, "left": left}

    app.runtime.register_activity(buy_activity)
    client = app.start()
    with DaprClient() as d:
        for key, quantity in {"paperclip": 100, "cars": 10}.items():
            d.save_state(store, key, json.dumps({"name": key, "quantity": quantity}))

    iid = client.schedule_new_workflow(purchase_workflow, input={"item": "cars", "quantity": 1})
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"processed": True, "left": 9}
    with DaprClient() as d:
        assert json.loads(d.get_state(store, "cars").data)["quantity"] == 9
        assert json.loads(d.get_state(store, "paperclip").data)["quantity"] == 100


# -- state ----------------------------------------------------------------------------------


def test_get_state_of_missing_key_is_empty(dapr: DaprClient) -> None:
    response = dapr.get_state("statestore", "never-saved")
    assert (response.data, response.etag) == (b"", "")


def test_save_with_stale_etag_is_aborted(dapr: DaprClient) -> None:
    dapr.save_state("statestore", "k", "v1")
    etag = dapr.get_state("statestore", "k").etag
    dapr.save_state("statestore", "k", "v2", etag=etag)
    with pytest.raises(DaprGrpcError) as info:
        dapr.save_state("statestore", "k", "v3", etag=etag)
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert info.value.error_code() == "ERR_STATE_SAVE"
    assert info.value.details().startswith(
        "failed saving state in state store statestore: possible etag mismatch."
    )
    assert dapr.get_state("statestore", "k").data == b"v2"


def test_first_write_refuses_to_overwrite(dapr: DaprClient) -> None:
    first = StateOptions(concurrency=Concurrency.first_write)
    dapr.save_state("statestore", "once", "a", options=first)
    with pytest.raises(DaprGrpcError) as info:
        dapr.save_state("statestore", "once", "b", options=first)
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert dapr.get_state("statestore", "once").data == b"a"


def test_unknown_store_is_invalid_argument(dapr: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as info:
        dapr.save_state("nostore", "k", "v")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "state store nostore is not found"
    assert info.value.error_code() == "DAPR_STATE_NOT_FOUND"


def test_bulk_get_reports_values_and_missing_keys(dapr: DaprClient) -> None:
    dapr.save_state("statestore", "a", "1")
    dapr.save_state("statestore", "b", "2")
    items = dapr.get_bulk_state("statestore", ["b", "zz", "a"]).items
    assert [(i.key, i.data) for i in items] == [("b", b"2"), ("zz", b""), ("a", b"1")]
    assert items[0].etag and items[2].etag and not items[1].etag


def test_delete_with_wrong_etag_keeps_the_value(dapr: DaprClient) -> None:
    dapr.save_state("statestore", "d", "v")
    with pytest.raises(DaprGrpcError) as info:
        dapr.delete_state("statestore", "d", etag="1")
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert info.value.details().startswith("failed deleting state with key d: possible etag")
    etag = dapr.get_state("statestore", "d").etag
    dapr.delete_state("statestore", "d", etag=etag)
    assert dapr.get_state("statestore", "d").data == b""


def test_transaction_is_all_or_nothing(dapr: DaprClient) -> None:
    dapr.save_state("statestore", "t1", "old")
    dapr.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(key="t2", data="new"),
            TransactionalStateOperation(key="t1", operation_type=TransactionOperationType.delete),
        ],
    )
    assert dapr.get_state("statestore", "t2").data == b"new"
    assert dapr.get_state("statestore", "t1").data == b""

    with pytest.raises(DaprGrpcError) as info:
        dapr.execute_state_transaction(
            "statestore",
            [
                TransactionalStateOperation(key="t3", data="x"),
                TransactionalStateOperation(key="t2", data="y", etag="42"),
            ],
        )
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details().startswith("error while executing state transaction:")
    assert dapr.get_state("statestore", "t3").data == b""
    assert dapr.get_state("statestore", "t2").data == b"new"


def test_transaction_with_unknown_operation_is_unimplemented(
    runtime_stub: dapr_pb2_grpc.DaprStub,
) -> None:
    request = api_v1.ExecuteStateTransactionRequest(
        storeName="statestore",
        operations=[api_v1.TransactionalStateOperation(operationType="merge")],
    )
    error = rpc_error(lambda: runtime_stub.ExecuteStateTransaction(request))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "operation type merge not supported"


def test_key_with_separator_is_refused(dapr: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as info:
        dapr.save_state("statestore", "app||key", "v")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "input key/keyPrefix 'app||key' can't contain '||'"


def test_components_from_resources_path_are_the_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = tmp_path / "components"
    resources.mkdir()
    (resources / "orders.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: orderstore\n"
        "spec:\n  type: state.redis\n  version: v1\n"
    )
    sc = start_sidecar(tmp_path / "wf.db", monkeypatch, resources_path=str(resources))
    try:
        with DaprClient() as d:
            d.save_state("orderstore", "k", "v")
            assert d.get_state("orderstore", "k").data == b"v"
            with pytest.raises(DaprGrpcError) as info:
                d.get_state("statestore", "k")
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.error_code() == "DAPR_STATE_NOT_FOUND"
            assert info.value.details() == "state store statestore is not found"
            names = [c.name for c in d.get_metadata().registered_components]
            assert names == ["orderstore"]
    finally:
        sc.stop()


# -- workflow management methods (Beta1 and the deprecated Alpha1 are the same handlers) ------


@pytest.mark.parametrize("version", ["Beta1", "Alpha1"])
def test_workflow_lifecycle_through_runtime_api(
    app: WorkflowApp, runtime_stub: dapr_pb2_grpc.DaprStub, version: str
) -> None:
    @app.runtime.workflow(name="approval")
    def approval(ctx, order):  # type: ignore[no-untyped-def]
        decision = yield ctx.wait_for_external_event("decision")
        return {"order": order, "decision": decision}

    client = app.start()

    def call(method: str, request: object) -> object:
        return getattr(runtime_stub, f"{method}{version}")(request, timeout=WAIT)

    started = call(
        "StartWorkflow",
        api_v1.StartWorkflowRequest(
            instance_id=f"order-{version}",
            workflow_component="dapr",
            workflow_name="approval",
            input=b'{"id": 7}',
        ),
    )
    assert started.instance_id == f"order-{version}"  # type: ignore[attr-defined]
    client.wait_for_workflow_start(f"order-{version}", timeout_in_seconds=WAIT)

    got = call("GetWorkflow", api_v1.GetWorkflowRequest(instance_id=f"order-{version}"))
    assert got.workflow_name == "approval"  # type: ignore[attr-defined]
    assert got.runtime_status == "RUNNING"  # type: ignore[attr-defined]
    assert got.properties["dapr.workflow.input"] == '{"id": 7}'  # type: ignore[attr-defined]

    call("PauseWorkflow", api_v1.PauseWorkflowRequest(instance_id=f"order-{version}"))
    assert wait_until(
        lambda: (
            client.get_workflow_state(f"order-{version}").runtime_status  # type: ignore[union-attr]
            == WorkflowStatus.SUSPENDED
        )
    )
    call("ResumeWorkflow", api_v1.ResumeWorkflowRequest(instance_id=f"order-{version}"))
    call(
        "RaiseEventWorkflow",
        api_v1.RaiseEventWorkflowRequest(
            instance_id=f"order-{version}", event_name="decision", event_data=b'"approved"'
        ),
    )
    state = client.wait_for_workflow_completion(f"order-{version}", timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"order": {"id": 7}, "decision": "approved"}

    done = call("GetWorkflow", api_v1.GetWorkflowRequest(instance_id=f"order-{version}"))
    assert done.runtime_status == "COMPLETED"  # type: ignore[attr-defined]
    assert json.loads(done.properties["dapr.workflow.output"]) == {  # type: ignore[attr-defined]
        "order": {"id": 7},
        "decision": "approved",
    }


def test_purge_right_after_completion_succeeds(
    app: WorkflowApp, runtime_stub: dapr_pb2_grpc.DaprStub
) -> None:
    """What an app does: wait for completion, then purge. The wait must not report COMPLETED
    before the completion is committed, or the purge finds the instance still active."""

    @app.runtime.workflow(name="quick")
    def quick(ctx, _):  # type: ignore[no-untyped-def]
        return (yield ctx.wait_for_external_event("go"))

    client = app.start()
    for n in range(10):
        iid = f"quick-{n}"
        client.schedule_new_workflow(quick, instance_id=iid)
        client.raise_workflow_event(iid, "go", data=n)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
        runtime_stub.PurgeWorkflowBeta1(api_v1.PurgeWorkflowRequest(instance_id=iid), timeout=WAIT)
        assert client.get_workflow_state(iid) is None


def test_terminate_through_runtime_api(
    app: WorkflowApp, runtime_stub: dapr_pb2_grpc.DaprStub
) -> None:
    @app.runtime.workflow(name="forever")
    def forever(ctx, _):  # type: ignore[no-untyped-def]
        yield ctx.wait_for_external_event("never")

    client = app.start()
    runtime_stub.StartWorkflowBeta1(
        api_v1.StartWorkflowRequest(instance_id="doomed", workflow_name="forever"), timeout=WAIT
    )
    client.wait_for_workflow_start("doomed", timeout_in_seconds=WAIT)
    runtime_stub.TerminateWorkflowBeta1(
        api_v1.TerminateWorkflowRequest(instance_id="doomed"), timeout=WAIT
    )
    state = client.wait_for_workflow_completion("doomed", timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED


def test_start_without_instance_id_generates_a_uuid(
    app: WorkflowApp, runtime_stub: dapr_pb2_grpc.DaprStub
) -> None:
    @app.runtime.workflow(name="noop")
    def noop(ctx, _):  # type: ignore[no-untyped-def]
        return "done"

    client = app.start()
    started = runtime_stub.StartWorkflowBeta1(
        api_v1.StartWorkflowRequest(workflow_name="noop"), timeout=WAIT
    )
    assert len(started.instance_id) == 36 and started.instance_id.count("-") == 4
    state = client.wait_for_workflow_completion(started.instance_id, timeout_in_seconds=WAIT)
    assert state is not None and state.serialized_output == '"done"'


def test_starting_an_active_instance_again_fails_as_daprd_does(
    app: WorkflowApp, runtime_stub: dapr_pb2_grpc.DaprStub
) -> None:
    @app.runtime.workflow(name="waits")
    def waits(ctx, _):  # type: ignore[no-untyped-def]
        yield ctx.wait_for_external_event("go")

    app.start()
    request = api_v1.StartWorkflowRequest(instance_id="twice", workflow_name="waits")
    runtime_stub.StartWorkflowBeta1(request, timeout=WAIT)
    error = rpc_error(lambda: runtime_stub.StartWorkflowBeta1(request, timeout=WAIT))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details().startswith("error starting workflow 'waits': unable to start workflow:")
    assert "already exists" in error.details()


def test_workflow_requests_are_validated(runtime_stub: dapr_pb2_grpc.DaprStub) -> None:
    bad_id = rpc_error(
        lambda: runtime_stub.StartWorkflowBeta1(
            api_v1.StartWorkflowRequest(instance_id="a b", workflow_name="w")
        )
    )
    assert bad_id.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_id.details() == (
        "workflow instance ID 'a b' is invalid: only alphanumeric and underscore characters"
        " are allowed"
    )
    too_long = rpc_error(
        lambda: runtime_stub.StartWorkflowBeta1(
            api_v1.StartWorkflowRequest(instance_id="x" * 65, workflow_name="w")
        )
    )
    assert too_long.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert too_long.details() == "workflow instance ID exceeds the max length of 64 characters"
    no_name = rpc_error(
        lambda: runtime_stub.StartWorkflowBeta1(api_v1.StartWorkflowRequest(instance_id="ok"))
    )
    assert (no_name.code(), no_name.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "workflow name is not configured",
    )
    no_event = rpc_error(
        lambda: runtime_stub.RaiseEventWorkflowBeta1(
            api_v1.RaiseEventWorkflowRequest(instance_id="ok")
        )
    )
    assert no_event.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert no_event.details() == "missing workflow event name"
    no_id = rpc_error(lambda: runtime_stub.GetWorkflowBeta1(api_v1.GetWorkflowRequest()))
    assert no_id.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert no_id.details() == "no instance ID was provided"


def test_unknown_instance_errors_match_daprd(runtime_stub: dapr_pb2_grpc.DaprStub) -> None:
    got = runtime_stub.GetWorkflowBeta1(api_v1.GetWorkflowRequest(instance_id="ghost"))
    assert got == api_v1.GetWorkflowResponse(instance_id="ghost")

    for method, request in (
        ("TerminateWorkflowBeta1", api_v1.TerminateWorkflowRequest(instance_id="ghost")),
        ("PurgeWorkflowBeta1", api_v1.PurgeWorkflowRequest(instance_id="ghost")),
    ):
        error = rpc_error(lambda m=method, r=request: getattr(runtime_stub, m)(r))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == "unable to find workflow with the provided instance ID: ghost"

    raised = rpc_error(
        lambda: runtime_stub.RaiseEventWorkflowBeta1(
            api_v1.RaiseEventWorkflowRequest(instance_id="ghost", event_name="e")
        )
    )
    assert raised.code() == grpc.StatusCode.INTERNAL
    assert raised.details().startswith(
        "error raising event on workflow 'ghost': failed to raise event e on workflow ghost:"
    )


def test_purge_of_running_instance_is_refused(
    app: WorkflowApp, runtime_stub: dapr_pb2_grpc.DaprStub
) -> None:
    @app.runtime.workflow(name="busy")
    def busy(ctx, _):  # type: ignore[no-untyped-def]
        yield ctx.wait_for_external_event("done")

    client = app.start()
    runtime_stub.StartWorkflowBeta1(
        api_v1.StartWorkflowRequest(instance_id="busy-1", workflow_name="busy"), timeout=WAIT
    )
    client.wait_for_workflow_start("busy-1", timeout_in_seconds=WAIT)
    error = rpc_error(
        lambda: runtime_stub.PurgeWorkflowBeta1(api_v1.PurgeWorkflowRequest(instance_id="busy-1"))
    )
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details().startswith("error purging workflow busy-1:")
    assert "has not yet completed" in error.details()
    assert client.get_workflow_state("busy-1") is not None


# -- metadata, unserved methods, API token -----------------------------------------------------


def test_metadata_lists_state_store_and_extended_metadata(dapr: DaprClient) -> None:
    metadata = dapr.get_metadata()
    assert [(c.name, c.type) for c in metadata.registered_components] == [
        ("statestore", "state.sqlite")
    ]
    assert list(metadata.registered_components[0].capabilities) == ["ETAG", "TRANSACTIONAL"]
    dapr.set_metadata("owner", "tests")
    assert dapr.get_metadata().extended_metadata["owner"] == "tests"


def test_metadata_counts_connected_workers(app: WorkflowApp, dapr: DaprClient) -> None:
    app.start()
    stub = dapr_pb2_grpc.DaprStub(dapr._channel)
    # The SDK's start() returns once its stream reader runs, a moment before the call lands.
    assert wait_until(
        lambda: stub.GetMetadata(api_v1.GetMetadataRequest()).workflows.connected_workers == 1
    )


def test_metadata_reports_the_engines_connected_workers(tmp_path: Path) -> None:
    class EngineWithWorkers:
        connected_workers = 2

    store = Store(str(tmp_path / "m.db"))
    try:
        response = runtime_metadata(EngineWithWorkers(), StateStore(store, ["statestore"]), {})
    finally:
        store.close()
    assert response.workflows.connected_workers == 2


def test_methods_not_served_answer_unimplemented(runtime_stub: dapr_pb2_grpc.DaprStub) -> None:
    error = rpc_error(
        lambda: runtime_stub.PublishEvent(
            api_v1.PublishEventRequest(pubsub_name="p", topic="t", data=b"x")
        )
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


class TestApiToken:
    def test_call_without_token_is_refused_then_allowed_with_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sc = start_sidecar(tmp_path / "wf.db", monkeypatch, api_token="s3cret")
        try:
            with grpc.insecure_channel(sc.grpc_address) as channel:
                stub = dapr_pb2_grpc.DaprStub(channel)
                request = api_v1.GetStateRequest(store_name="statestore", key="k")
                refused = rpc_error(lambda: stub.GetState(request))
                assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
                allowed = stub.GetState(request, metadata=(("dapr-api-token", "s3cret"),))
                assert allowed.data == b""
            monkeypatch.setenv("DAPR_API_TOKEN", "s3cret")
            with DaprClient() as d:  # the SDK sends the token on HTTP health and gRPC
                d.save_state("statestore", "k", "v")
                assert d.get_state("statestore", "k").data == b"v"
        finally:
            sc.stop()
