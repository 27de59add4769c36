"""Scenarios: the Dapr runtime API a program calls directly, over gRPC
(``dapr.proto.runtime.v1.Dapr``) and HTTP (``/v1.0/workflows``, ``/v1.0/state``): answers,
status codes, error codes and messages. ETags are opaque (Redis counts versions, the sidecar
draws random numbers), so only whether one came back is compared, then how each is honoured."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import grpc
from dapr.ext.workflow import WorkflowRuntime
from dapr.proto import api_v1, common_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc
from google.rpc import error_details_pb2, status_pb2

from .differential import Program, scenario


def _workflows(rt: WorkflowRuntime) -> None:
    @rt.workflow(name="api_flow")
    def api_flow(ctx, order):
        ctx.set_custom_status("waiting")
        approval = yield ctx.wait_for_external_event("approve")
        return {"order": order, "approval": approval}


def _error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    for key, value in exc.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


def _grpc(stub: Any, method: str, request: Any) -> Any:
    """A runtime API call as a program sees it: the answer, or code, message and reason."""
    try:
        return getattr(stub, method)(request, timeout=30)
    except grpc.RpcError as exc:
        info = _error_info(exc)
        return {
            "code": exc.code().name,  # type: ignore[attr-defined]
            "details": exc.details(),  # type: ignore[attr-defined]
            "reason": None if info is None else info.reason,
        }


def _workflow(response: Any) -> Any:
    if not isinstance(response, api_v1.GetWorkflowResponse):
        return response
    return {
        "instance_id": response.instance_id,
        "workflow_name": response.workflow_name,
        "runtime_status": response.runtime_status,
        "properties": dict(response.properties),
        "timestamps set": response.created_at.seconds > 0 and response.last_updated_at.seconds > 0,
    }


def _empty(response: Any) -> Any:
    return "ok" if not isinstance(response, dict) else response


@scenario("Dapr runtime gRPC workflow API")
def runtime_grpc_workflow_api(p: Program) -> dict[str, Any]:
    p.worker(_workflows)
    stub = dapr_pb2_grpc.DaprStub(grpc.insecure_channel(p.engine.grpc_address))
    call = lambda method, request: _grpc(stub, method, request)  # noqa: E731

    def start(iid: str, name: str = "api_flow", data: bytes = b'{"qty": 2}') -> Any:
        answer = call(
            "StartWorkflowBeta1",
            api_v1.StartWorkflowRequest(
                instance_id=iid, workflow_component="dapr", workflow_name=name, input=data
            ),
        )
        return answer.instance_id if isinstance(answer, api_v1.StartWorkflowResponse) else answer

    def get(iid: str) -> Any:
        request = api_v1.GetWorkflowRequest(instance_id=iid, workflow_component="dapr")
        return _workflow(call("GetWorkflowBeta1", request))

    def raise_event(iid: str, name: str = "approve", data: bytes = b'"boss"') -> Any:
        request = api_v1.RaiseEventWorkflowRequest(
            instance_id=iid, workflow_component="dapr", event_name=name, event_data=data
        )
        return _empty(call("RaiseEventWorkflowBeta1", request))

    def simple(method: str, iid: str) -> Any:
        kind = {
            "Terminate": api_v1.TerminateWorkflowRequest,
            "Pause": api_v1.PauseWorkflowRequest,
            "Resume": api_v1.ResumeWorkflowRequest,
            "Purge": api_v1.PurgeWorkflowRequest,
        }[method]
        request = kind(instance_id=iid, workflow_component="dapr")
        return _empty(call(f"{method}WorkflowBeta1", request))

    seen: dict[str, Any] = {"start": start("grpc-api-1")}
    p.wait_for(lambda: get("grpc-api-1").get("properties", {}).get("dapr.workflow.custom_status"))
    seen["running"] = get("grpc-api-1")
    seen["start over it"] = start("grpc-api-1")
    seen["pause"] = simple("Pause", "grpc-api-1")
    seen["paused"] = p.wait_status("grpc-api-1", "SUSPENDED")
    seen["resume"] = simple("Resume", "grpc-api-1")
    seen["raise"] = raise_event("grpc-api-1")
    p.wait("grpc-api-1")
    seen["completed"] = get("grpc-api-1")
    seen["alpha1 get"] = _workflow(
        call("GetWorkflowAlpha1", api_v1.GetWorkflowRequest(instance_id="grpc-api-1"))
    )
    seen["purge"] = simple("Purge", "grpc-api-1")
    seen["after purge"] = get("grpc-api-1")
    start("grpc-api-2")
    p.wait_status("grpc-api-2", "RUNNING")
    seen["purge running"] = simple("Purge", "grpc-api-2")
    seen["terminate"] = simple("Terminate", "grpc-api-2")
    seen["terminated"] = _workflow(p.wait("grpc-api-2"))
    for method in ("Terminate", "Pause", "Resume", "Purge"):
        seen[f"{method} unknown"] = simple(method, "grpc-nobody")
    seen["raise unknown"] = raise_event("grpc-nobody")
    seen["get unknown"] = get("grpc-nobody")
    seen["start without a name"] = start("grpc-api-3", name="")
    seen["start with a bad id"] = start("bad id!")
    seen["start with a long id"] = start("x" * 80)
    seen["raise without a name"] = raise_event("grpc-api-2", name="")
    seen["get without an id"] = get("")
    return seen


def _http(p: Program, method: str, path: str, body: Any = None, **headers: str) -> Any:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    request = urllib.request.Request(
        p.engine.http_base + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw, etag = response.status, response.read(), response.headers.get("ETag")
    except urllib.error.HTTPError as exc:
        status, raw, etag = exc.code, exc.read(), exc.headers.get("ETag")
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    if isinstance(parsed, dict):
        parsed = {k: v for k, v in parsed.items() if k not in ("createdAt", "lastUpdatedAt")}
    return {"status": status, "body": parsed, "etag": etag is not None and etag != ""}


@scenario("Dapr runtime HTTP workflow API")
def runtime_http_workflow_api(p: Program) -> dict[str, Any]:
    p.worker(_workflows)
    base = "/v1.0/workflows/dapr"
    call = lambda method, path, body=None: _http(p, method, base + path, body)  # noqa: E731
    seen: dict[str, Any] = {
        "start": call("POST", "/api_flow/start?instanceID=http-api-1", {"qty": 3}),
    }
    p.wait_for(lambda: call("GET", "/http-api-1")["body"].get("properties", {}).get(
        "dapr.workflow.custom_status"
    ))  # fmt: skip
    seen["running"] = call("GET", "/http-api-1")
    seen["start over it"] = call("POST", "/api_flow/start?instanceID=http-api-1", {"qty": 3})
    seen["pause"] = call("POST", "/http-api-1/pause")
    p.wait_status("http-api-1", "SUSPENDED")
    seen["paused"] = call("GET", "/http-api-1")
    seen["resume"] = call("POST", "/http-api-1/resume")
    seen["raise"] = call("POST", "/http-api-1/raiseEvent/approve", "the boss")
    p.wait("http-api-1")
    seen["completed"] = call("GET", "/http-api-1")
    seen["beta1 get"] = _http(p, "GET", "/v1.0-beta1/workflows/dapr/http-api-1")
    seen["purge"] = call("POST", "/http-api-1/purge")
    seen["after purge"] = call("GET", "/http-api-1")
    call("POST", "/api_flow/start?instanceID=http-api-2", {"qty": 1})
    p.wait_status("http-api-2", "RUNNING")
    seen["purge running"] = call("POST", "/http-api-2/purge")
    seen["terminate"] = call("POST", "/http-api-2/terminate")
    p.wait("http-api-2")
    seen["terminated"] = call("GET", "/http-api-2")
    for action in ("terminate", "pause", "resume", "purge", "raiseEvent/approve"):
        seen[f"{action} unknown"] = call("POST", f"/http-nobody/{action}")
    seen["get unknown"] = call("GET", "/http-nobody")
    seen["start with a bad id"] = call("POST", "/api_flow/start?instanceID=bad%20id", {})
    seen["start with a long id"] = call("POST", "/api_flow/start?instanceID=" + "x" * 80, {})
    return seen


@scenario("Dapr state API over gRPC")
def state_api_grpc(p: Program) -> dict[str, Any]:
    stub = dapr_pb2_grpc.DaprStub(grpc.insecure_channel(p.engine.grpc_address))
    call = lambda method, request: _grpc(stub, method, request)  # noqa: E731
    item = common_v1.StateItem
    first_write = common_v1.StateOptions(concurrency=common_v1.StateOptions.CONCURRENCY_FIRST_WRITE)

    def save(*items: Any, store: str = "statestore") -> Any:
        return _empty(call("SaveState", api_v1.SaveStateRequest(store_name=store, states=items)))

    def get(key: str, store: str = "statestore") -> Any:
        answer = call("GetState", api_v1.GetStateRequest(store_name=store, key=key))
        if isinstance(answer, dict):
            return answer, None
        return {"data": answer.data.decode(), "etag set": bool(answer.etag)}, answer.etag

    seen: dict[str, Any] = {"save": save(item(key="order-1", value=b'{"qty":250}'))}
    seen["get"], etag = get("order-1")
    seen["save with its etag"] = save(
        item(key="order-1", value=b'{"qty":260}', etag=common_v1.Etag(value=etag))
    )
    seen["save with a stale etag"] = save(
        item(key="order-1", value=b'{"qty":1}', etag=common_v1.Etag(value="987654"))
    )
    save(item(key="order-fw", value=b"1"))
    seen["first-write over a key"] = save(item(key="order-fw", value=b"2", options=first_write))
    seen["get after"], etag = get("order-1")
    seen["get missing"], _ = get("order-404")
    bulk = call(
        "GetBulkState",
        api_v1.GetBulkStateRequest(store_name="statestore", keys=["order-1", "order-404"]),
    )
    seen["bulk"] = [
        {"key": b.key, "data": b.data.decode(), "etag set": bool(b.etag), "error": b.error}
        for b in bulk.items
    ]
    seen["delete with a stale etag"] = _empty(
        call(
            "DeleteState",
            api_v1.DeleteStateRequest(
                store_name="statestore", key="order-1", etag=common_v1.Etag(value="987654")
            ),
        )
    )
    upsert = api_v1.TransactionalStateOperation(
        operationType="upsert", request=item(key="order-2", value=b'"two"')
    )
    delete = api_v1.TransactionalStateOperation(operationType="delete", request=item(key="order-1"))
    seen["transaction"] = _empty(
        call(
            "ExecuteStateTransaction",
            api_v1.ExecuteStateTransactionRequest(
                storeName="statestore", operations=[upsert, delete]
            ),
        )
    )
    seen["after transaction"] = [get("order-1")[0], get("order-2")[0]]
    seen["unknown store"] = save(item(key="k", value=b"1"), store="nostore")
    seen["get from unknown store"], _ = get("k", store="nostore")
    seen["key with ||"] = save(item(key="a||b", value=b"1"))
    return seen


@scenario("Dapr state API over HTTP")
def state_api_http(p: Program) -> dict[str, Any]:
    store = "/v1.0/state/statestore"
    seen: dict[str, Any] = {
        "save": _http(p, "POST", store, [{"key": "sku-1", "value": {"qty": 250}}]),
        "get": _http(p, "GET", store + "/sku-1"),
        "get missing": _http(p, "GET", store + "/sku-404"),
        "save another": _http(p, "POST", store, [{"key": "sku-fw", "value": 1}]),
        "first-write over a key": _http(
            p,
            "POST",
            store,
            [{"key": "sku-fw", "value": 2, "options": {"concurrency": "first-write"}}],
        ),
        "stale etag": _http(p, "POST", store, [{"key": "sku-1", "value": 2, "etag": "987654"}]),
        "bulk": _http(p, "POST", store + "/bulk", {"keys": ["sku-1", "sku-404"]}),
        "delete with a stale etag": _http(p, "DELETE", store + "/sku-1", **{"If-Match": "987654"}),
        "transaction": _http(
            p,
            "POST",
            store + "/transaction",
            {
                "operations": [
                    {"operation": "upsert", "request": {"key": "sku-2", "value": "two"}},
                    {"operation": "delete", "request": {"key": "sku-1"}},
                ]
            },
        ),
        "after transaction": [_http(p, "GET", store + "/sku-1"), _http(p, "GET", store + "/sku-2")],
        "unknown store": _http(p, "POST", "/v1.0/state/nostore", [{"key": "k", "value": 1}]),
        "key with ||": _http(p, "POST", store, [{"key": "a||b", "value": 1}]),
        "bad body": _http(p, "POST", store, b"not json"),
        "healthz": _http(p, "GET", "/v1.0/healthz"),
    }
    for entry in seen["bulk"]["body"] or []:
        entry["etag"] = "etag" in entry
    return seen


@scenario("API token", api_token="conformance-token")
def api_token_required(p: Program) -> dict[str, Any]:
    """With DAPR_API_TOKEN set, every call needs it, except the two health checks."""
    token = {"dapr-api-token": "conformance-token"}
    wrong = {"dapr-api-token": "not-the-token"}
    channel = grpc.insecure_channel(p.engine.grpc_address)
    hello = channel.unary_unary("/TaskHubSidecarService/Hello")
    stub = dapr_pb2_grpc.DaprStub(channel)
    state = api_v1.GetStateRequest(store_name="statestore", key="k")

    def refused(call: Any) -> Any:
        try:
            return call()
        except grpc.RpcError as exc:
            info = _error_info(exc)
            return {
                "code": exc.code().name,  # type: ignore[attr-defined]
                "details": exc.details(),  # type: ignore[attr-defined]
                "error info": None if info is None else [info.reason, dict(info.metadata)],
            }

    return {
        "http without": _http(p, "GET", "/v1.0/state/statestore/k"),
        "http wrong": _http(p, "GET", "/v1.0/state/statestore/k", **wrong),
        "http with": _http(p, "GET", "/v1.0/state/statestore/k", **token),
        "healthz without": _http(p, "GET", "/v1.0/healthz"),
        "outbound healthz without": _http(p, "GET", "/v1.0/healthz/outbound"),
        "workflow protocol without": refused(lambda: hello(b"", timeout=10)),
        "workflow protocol wrong": refused(
            lambda: hello(b"", timeout=10, metadata=tuple(wrong.items()))
        ),
        "workflow protocol with": refused(
            lambda: hello(b"", timeout=10, metadata=tuple(token.items()))
        ),
        "runtime api without": refused(lambda: stub.GetState(state, timeout=10)),
        "runtime api wrong": refused(
            lambda: stub.GetState(state, timeout=10, metadata=tuple(wrong.items()))
        ),
        "runtime api with": str(
            stub.GetState(state, timeout=10, metadata=tuple(token.items())).data
        ),
    }
