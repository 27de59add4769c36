"""The Dapr HTTP API on ``http_port``: the docs' curl examples for workflows, the state API with
ETags, health, metadata and the API token, over real HTTP against a real sidecar."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPMessage
from pathlib import Path

import grpc
import pytest
from dapr.ext.workflow import WorkflowStatus
from dapr.proto import api_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from sidecar import Sidecar
from sidecar.tests.harness import WAIT, WorkflowApp, wait_until


@dataclass
class Reply:
    status: int
    headers: HTTPMessage
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


class Http:
    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(
        self,
        method: str,
        path: str,
        body: bytes | str | object | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        conn = HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()


@pytest.fixture
def sidecar(db_path: Path) -> Iterator[Sidecar]:
    sc = Sidecar(db_path=str(db_path), grpc_port=0, http_port=0).start()
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def api(sidecar: Sidecar) -> Http:
    assert sidecar.http_port
    return Http(sidecar.http_port)


def status_of(api: Http, instance_id: str) -> str:
    return str(api("GET", f"/v1.0/workflows/dapr/{instance_id}").json()["runtimeStatus"])  # type: ignore[index]


# -- workflows: the docs' examples (https://docs.dapr.io/reference/api/workflow_api/) ---------


def test_docs_workflow_flow_start_get_raise_event(app: WorkflowApp, api: Http) -> None:
    @app.runtime.workflow(name="OrderProcessingWorkflow")
    def order_processing(ctx, order):  # type: ignore[no-untyped-def]
        approval = yield ctx.wait_for_external_event("approval")
        return {"order": order["Name"], "approved": approval["approved"]}

    client = app.start()
    started = api(
        "POST",
        "/v1.0/workflows/dapr/OrderProcessingWorkflow/start?instanceID=12345678",
        {"Name": "Paperclips", "TotalCost": 99.95, "Quantity": 1},
        {"Content-Type": "application/json"},
    )
    assert started.status == 202
    assert started.json() == {"instanceID": "12345678"}
    client.wait_for_workflow_start("12345678", timeout_in_seconds=WAIT)

    running = api("GET", "/v1.0/workflows/dapr/12345678")
    assert running.status == 200
    body = running.json()
    assert isinstance(body, dict)
    assert body["instanceID"] == "12345678"
    assert body["workflowName"] == "OrderProcessingWorkflow"
    assert body["runtimeStatus"] == "RUNNING"
    assert body["createdAt"].endswith("Z") and body["lastUpdatedAt"].endswith("Z")
    assert json.loads(body["properties"]["dapr.workflow.input"])["Name"] == "Paperclips"

    raised = api("POST", "/v1.0/workflows/dapr/12345678/raiseEvent/approval", {"approved": True})
    assert raised.status == 202
    state = client.wait_for_workflow_completion("12345678", timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED

    done = api("GET", "/v1.0/workflows/dapr/12345678").json()
    assert isinstance(done, dict) and done["runtimeStatus"] == "COMPLETED"
    assert json.loads(done["properties"]["dapr.workflow.output"]) == {
        "order": "Paperclips",
        "approved": True,
    }


@pytest.mark.parametrize("version", ["v1.0", "v1.0-beta1", "v1.0-alpha1"])
def test_pause_resume_terminate_purge(app: WorkflowApp, api: Http, version: str) -> None:
    @app.runtime.workflow(name="long_running")
    def long_running(ctx, _):  # type: ignore[no-untyped-def]
        yield ctx.wait_for_external_event("never")

    client = app.start()
    base = f"/{version}/workflows/dapr"
    assert api("POST", f"{base}/long_running/start?instanceID=lr-1").status == 202
    client.wait_for_workflow_start("lr-1", timeout_in_seconds=WAIT)

    paused = api("POST", f"{base}/lr-1/pause")
    assert (paused.status, paused.body) == (202, b"{}")
    assert wait_until(lambda: status_of(api, "lr-1") == "SUSPENDED")
    assert api("POST", f"{base}/lr-1/resume").status == 202
    assert wait_until(lambda: status_of(api, "lr-1") == "RUNNING")

    assert api("POST", f"{base}/lr-1/terminate").status == 202
    state = client.wait_for_workflow_completion("lr-1", timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED
    assert status_of(api, "lr-1") == "TERMINATED"

    assert api("POST", f"{base}/lr-1/purge").status == 202
    gone = api("GET", f"{base}/lr-1")
    assert gone.status == 404
    assert gone.json() == {
        "errorCode": "ERR_INSTANCE_ID_NOT_FOUND",
        "message": "unable to find workflow with the provided instance ID: lr-1",
    }


def test_start_without_instance_id_returns_generated_id(app: WorkflowApp, api: Http) -> None:
    @app.runtime.workflow(name="hello")
    def hello(ctx, name):  # type: ignore[no-untyped-def]
        return f"hello {name}"

    client = app.start()
    started = api("POST", "/v1.0/workflows/dapr/hello/start", '"world"')
    instance_id = started.json()["instanceID"]  # type: ignore[index]
    assert len(instance_id) == 36
    state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=WAIT)
    assert state is not None and json.loads(state.serialized_output) == "hello world"


def test_workflow_errors_have_daprd_codes(api: Http) -> None:
    invalid = api("POST", "/v1.0/workflows/dapr/w/start?instanceID=bad.id")
    assert invalid.status == 400
    assert invalid.json()["errorCode"] == "ERR_INSTANCE_ID_INVALID"  # type: ignore[index]

    too_long = api("POST", f"/v1.0/workflows/dapr/w/start?instanceID={'x' * 65}")
    assert too_long.status == 400
    assert too_long.json()["errorCode"] == "ERR_INSTANCE_ID_TOO_LONG"  # type: ignore[index]

    terminate = api("POST", "/v1.0/workflows/dapr/ghost/terminate")
    assert terminate.status == 404
    assert terminate.json()["errorCode"] == "ERR_INSTANCE_ID_NOT_FOUND"  # type: ignore[index]

    raised = api("POST", "/v1.0/workflows/dapr/ghost/raiseEvent/e", "{}")
    assert raised.status == 500
    assert raised.json()["errorCode"] == "ERR_RAISE_EVENT_WORKFLOW"  # type: ignore[index]

    paused = api("POST", "/v1.0/workflows/dapr/ghost/pause")
    assert paused.status == 500
    assert paused.json()["errorCode"] == "ERR_PAUSE_WORKFLOW"  # type: ignore[index]


# -- state ----------------------------------------------------------------------------------


def test_save_and_get_state_with_etag(api: Http) -> None:
    saved = api("POST", "/v1.0/state/statestore", [{"key": "order_1", "value": {"qty": 250}}])
    assert saved.status == 204
    got = api("GET", "/v1.0/state/statestore/order_1")
    assert got.status == 200
    assert got.body == b'{"qty":250}'
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.headers["ETag"]

    missing = api("GET", "/v1.0/state/statestore/nothing")
    assert (missing.status, missing.body) == (204, b"")


def test_stale_etag_is_a_conflict_and_changes_nothing(api: Http) -> None:
    api("POST", "/v1.0/state/statestore", [{"key": "k", "value": "one"}])
    etag = api("GET", "/v1.0/state/statestore/k").headers["ETag"]
    ok = api("POST", "/v1.0/state/statestore", [{"key": "k", "value": "two", "etag": etag}])
    assert ok.status == 204

    stale = api("POST", "/v1.0/state/statestore", [{"key": "k", "value": "three", "etag": etag}])
    assert stale.status == 409
    error = stale.json()
    assert isinstance(error, dict) and error["errorCode"] == "ERR_STATE_SAVE"
    assert error["message"].startswith(
        "failed saving state in state store statestore: possible etag mismatch."
    )
    assert api("GET", "/v1.0/state/statestore/k").body == b'"two"'

    malformed = api("POST", "/v1.0/state/statestore", [{"key": "k", "value": 1, "etag": "x"}])
    assert malformed.status == 400
    assert malformed.json()["errorCode"] == "ERR_STATE_SAVE"  # type: ignore[index]


def test_first_write_option_over_http(api: Http) -> None:
    item = {"key": "fw", "value": 1, "options": {"concurrency": "first-write"}}
    assert api("POST", "/v1.0/state/statestore", [item]).status == 204
    assert api("POST", "/v1.0/state/statestore", [item]).status == 409


def test_delete_with_if_match(api: Http) -> None:
    api("POST", "/v1.0/state/statestore", [{"key": "d", "value": 1}])
    wrong = api("DELETE", "/v1.0/state/statestore/d", headers={"If-Match": "5"})
    assert wrong.status == 409
    assert wrong.json()["errorCode"] == "ERR_STATE_DELETE"  # type: ignore[index]
    etag = api("GET", "/v1.0/state/statestore/d").headers["ETag"]
    assert api("DELETE", "/v1.0/state/statestore/d", headers={"If-Match": etag}).status == 204
    assert api("GET", "/v1.0/state/statestore/d").status == 204


def test_bulk_get_embeds_values(api: Http) -> None:
    api(
        "PUT", "/v1.0/state/statestore", [{"key": "a", "value": {"n": 1}}, {"key": "b", "value": 2}]
    )
    reply = api("POST", "/v1.0/state/statestore/bulk", {"keys": ["a", "missing", "b"]})
    assert reply.status == 200
    items = reply.json()
    assert isinstance(items, list)
    assert [(i["key"], i.get("data")) for i in items] == [
        ("a", {"n": 1}),
        ("missing", None),
        ("b", 2),
    ]
    assert items[0]["etag"] and "etag" not in items[1]


def test_transaction_over_http(api: Http) -> None:
    api("POST", "/v1.0/state/statestore", [{"key": "gone", "value": 1}])
    reply = api(
        "POST",
        "/v1.0/state/statestore/transaction",
        {
            "operations": [
                {"operation": "upsert", "request": {"key": "kept", "value": "v"}},
                {"operation": "delete", "request": {"key": "gone"}},
            ]
        },
    )
    assert reply.status == 204
    assert api("GET", "/v1.0/state/statestore/kept").body == b'"v"'
    assert api("GET", "/v1.0/state/statestore/gone").status == 204

    unknown = api(
        "POST",
        "/v1.0/state/statestore/transaction",
        {"operations": [{"operation": "merge", "request": {"key": "kept"}}]},
    )
    assert unknown.status == 400
    assert unknown.json() == {
        "errorCode": "ERR_NOT_SUPPORTED_STATE_OPERATION",
        "message": "operation type merge not supported",
    }


def test_state_errors_match_daprd(api: Http) -> None:
    no_store = api("POST", "/v1.0/state/nostore", [{"key": "k", "value": 1}])
    assert no_store.status == 400
    body = no_store.json()
    assert isinstance(body, dict)
    assert (body["errorCode"], body["message"]) == (
        "ERR_STATE_STORE_NOT_FOUND",
        "state store nostore is not found",
    )
    assert body["details"][0]["reason"] == "DAPR_STATE_NOT_FOUND"

    no_key = api("POST", "/v1.0/state/statestore", [{"value": 1}])
    assert no_key.status == 400
    assert no_key.json() == {
        "errorCode": "ERR_MALFORMED_REQUEST",
        "message": '"key" is a required field',
    }

    not_json = api("POST", "/v1.0/state/statestore", "[{")
    assert not_json.status == 400
    assert not_json.json()["errorCode"] == "ERR_MALFORMED_REQUEST"  # type: ignore[index]


def test_value_saved_over_http_reads_back_over_grpc(sidecar: Sidecar, api: Http) -> None:
    api("POST", "/v1.0/state/statestore", [{"key": "shared", "value": {"name": "cars"}}])
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        got = stub.GetState(api_v1.GetStateRequest(store_name="statestore", key="shared"))
    assert got.data == b'{"name":"cars"}'
    assert got.etag == api("GET", "/v1.0/state/statestore/shared").headers["ETag"]


# -- health and metadata --------------------------------------------------------------------


def test_health_endpoints_answer_no_content(api: Http) -> None:
    assert api("GET", "/v1.0/healthz").status == 204
    assert api("GET", "/v1.0/healthz/outbound").status == 204


def test_metadata_lists_the_state_store(api: Http) -> None:
    assert api("PUT", "/v1.0/metadata/team", "orders").status == 204
    reply = api("GET", "/v1.0/metadata")
    assert reply.status == 200
    body = reply.json()
    assert isinstance(body, dict)
    assert body["components"] == [
        {
            "name": "statestore",
            "type": "state.sqlite",
            "version": "v1",
            "capabilities": ["ETAG", "TRANSACTIONAL"],
        }
    ]
    assert body["extended"] == {"team": "orders"}


# -- API token: refused, grant, allowed -----------------------------------------------------


class TestApiToken:
    @pytest.fixture
    def sidecar(self, db_path: Path) -> Iterator[Sidecar]:
        sc = Sidecar(db_path=str(db_path), grpc_port=0, http_port=0, api_token="s3cret").start()
        try:
            yield sc
        finally:
            sc.stop()

    def test_request_without_token_is_refused(self, api: Http) -> None:
        reply = api("GET", "/v1.0/state/statestore/k")
        assert reply.status == 401
        assert reply.body == b"invalid api token\n"
        assert reply.headers["Content-Type"].startswith("text/plain")
        wrong = api("GET", "/v1.0/metadata", headers={"dapr-api-token": "guess"})
        assert wrong.status == 401

    def test_health_is_exempt_from_the_token(self, api: Http) -> None:
        assert api("GET", "/v1.0/healthz").status == 204
        assert api("GET", "/v1.0/healthz/outbound").status == 204

    def test_request_with_token_is_allowed(self, api: Http) -> None:
        token = {"dapr-api-token": "s3cret"}
        saved = api("POST", "/v1.0/state/statestore", [{"key": "k", "value": 1}], token)
        assert saved.status == 204
        assert api("GET", "/v1.0/state/statestore/k", headers=token).body == b"1"
