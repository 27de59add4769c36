"""The Dapr runtime API over HTTP: the subset a workflow app uses, on the sidecar's loop (aiohttp).

Routes, bodies, status codes and error bodies follow daprd (``pkg/api/http``):

* ``/{v1.0,v1.0-beta1,v1.0-alpha1}/workflows/{component}/…``: start (202 ``{"instanceID"}``),
  get (200, protojson of GetWorkflowResponse; 404 for an unknown instance), terminate, pause,
  resume, raiseEvent/{event}, purge (202 ``{}``). The component segment is ignored, as in
  daprd ≥1.15 (the docs say to use ``dapr``). Bodies are raw: the start body is the input, the
  raise body the event payload.
* ``/v1.0/state/{store}``: save (204), ``/{key}`` get (200 raw value with an ``ETag`` header, 204
  when absent) and delete (``If-Match``; 204), ``/bulk`` (200 ``[{key, data, etag}]``),
  ``/transaction`` (204). JSON values are stored as their compact JSON text, as daprd's stores
  marshal them, so a value saved over HTTP reads back over gRPC as the same JSON bytes.
* ``/v1.0/healthz`` and ``/v1.0/healthz/outbound`` (204; ``DaprClient`` waits for the latter),
  ``/v1.0/metadata`` (GET JSON, PUT ``/{key}`` raw value, 204).
* Errors: ``{"errorCode", "message"}``; errors daprd builds with an ErrorInfo (unknown store,
  illegal key) add ``details``. With an API token every request needs ``dapr-api-token``
  except GET on the two health routes; a refusal is daprd's text/plain 401 ``invalid api token``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from sidecar.dapr import workflow_management as wf
from sidecar.dapr.http_bodies import (
    MalformedRequest,
    as_object,
    as_text,
    compact_json,
    concurrency,
    is_strict_json,
    optional_text_field,
    read_json,
    read_raw,
    set_request,
    text_field,
)
from sidecar.dapr.metadata import runtime_metadata, set_extended_metadata
from sidecar.dapr.state_store import (
    DeleteRequest,
    SetRequest,
    StateEntry,
    StateStore,
    UnsupportedOperation,
)
from sidecar.engine.interface import WorkflowEngine
from sidecar.errors import SidecarError
from sidecar.limits import MAX_BODY_BYTES

log = logging.getLogger("sidecar.http")

WORKFLOW_VERSIONS = ("v1.0", "v1.0-beta1", "v1.0-alpha1")
TOKEN_HEADER = "dapr-api-token"
_TOKEN_EXEMPT = frozenset({"v1.0/healthz", "v1.0/healthz/outbound"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_response(text: str, status: int = 200) -> web.Response:
    # Bytes, not text: aiohttp would add "; charset=utf-8", daprd sends plain application/json.
    # A message may quote a header, which aiohttp decodes with surrogate escapes for bytes that
    # are not UTF-8: those go out as "?" rather than fail the answer.
    body = text.encode("utf-8", errors="replace")
    return web.Response(body=body, status=status, content_type="application/json")


def error_response(exc: SidecarError) -> web.Response:
    exc = wf.as_api_error(exc)
    error_code: str = getattr(exc, "error_code", "ERR_INTERNAL")
    body: dict[str, Any] = {
        "errorCode": error_code,
        "message": getattr(exc, "message", str(exc)),
    }
    reason = getattr(exc, "reason", None)
    if reason and reason != error_code:
        body["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "dapr.io",
                "metadata": None,
            }
        ]
    return _json_response(compact_json(body), status=getattr(exc, "http_status", 500))


def _token_middleware(token: str) -> Any:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        exempt = request.method == "GET" and request.path.strip("/") in _TOKEN_EXEMPT
        given = request.headers.get(TOKEN_HEADER, "")
        # surrogateescape: aiohttp decodes header bytes that are not UTF-8 that way.
        given_bytes = given.encode("utf-8", errors="surrogateescape")
        if not exempt and not hmac.compare_digest(given_bytes, token.encode()):
            return web.Response(status=401, text="invalid api token\n")
        return await handler(request)

    return check_token


def create_app(
    engine: WorkflowEngine,
    state: StateStore,
    api_token: str | None,
    *,
    extended_metadata: dict[str, str] | None = None,
) -> web.Application:
    """The Dapr HTTP API app. Run it on the engine's loop (``web.AppRunner`` + ``TCPSite``)."""
    middlewares = [_token_middleware(api_token)] if api_token else []
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    routes = _Routes(engine, state, extended_metadata if extended_metadata is not None else {})
    for version in WORKFLOW_VERSIONS:
        base = f"/{version}/workflows/{{component}}"
        app.router.add_post(f"{base}/{{name}}/start", routes.workflow_start)
        app.router.add_get(f"{base}/{{instance_id}}", routes.workflow_get)
        app.router.add_post(f"{base}/{{instance_id}}/terminate", routes.workflow_terminate)
        app.router.add_post(f"{base}/{{instance_id}}/pause", routes.workflow_pause)
        app.router.add_post(f"{base}/{{instance_id}}/resume", routes.workflow_resume)
        app.router.add_post(f"{base}/{{instance_id}}/purge", routes.workflow_purge)
        app.router.add_post(
            f"{base}/{{instance_id}}/raiseEvent/{{event}}", routes.workflow_raise_event
        )
    for method in ("POST", "PUT"):
        app.router.add_route(method, "/v1.0/state/{store}", routes.state_save)
        app.router.add_route(method, "/v1.0/state/{store}/bulk", routes.state_bulk)
        app.router.add_route(method, "/v1.0/state/{store}/transaction", routes.state_transaction)
    app.router.add_get("/v1.0/state/{store}/{key}", routes.state_get)
    app.router.add_delete("/v1.0/state/{store}/{key}", routes.state_delete)
    app.router.add_get("/v1.0/healthz", routes.healthz)
    app.router.add_get("/v1.0/healthz/outbound", routes.healthz)
    app.router.add_get("/v1.0/metadata", routes.metadata_get)
    app.router.add_put("/v1.0/metadata/{key}", routes.metadata_put)
    return app


def _handles_errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SidecarError as exc:
            return error_response(exc)

    return wrapped


class _Routes:
    def __init__(self, engine: WorkflowEngine, state: StateStore, extended: dict[str, str]) -> None:
        self.engine = engine
        self.state = state
        self.extended = extended
        for name in dir(self):
            if name.startswith(("workflow_", "state_", "metadata_")):
                setattr(self, name, _handles_errors(getattr(self, name)))

    # -- workflows ------------------------------------------------------------------------------

    async def workflow_start(self, request: web.Request) -> web.Response:
        instance_id = await wf.workflow_start(
            self.engine,
            instance_id=request.query.get("instanceID", ""),
            name=request.match_info["name"],
            input=await read_raw(request),
        )
        return _json_response(compact_json({"instanceID": instance_id}), status=202)

    async def workflow_get(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        response = await wf.workflow_get(self.engine, instance_id=instance_id)
        if response is None:
            raise wf.DaprApiError(
                "NOT_FOUND",
                404,
                "ERR_INSTANCE_ID_NOT_FOUND",
                f"unable to find workflow with the provided instance ID: {instance_id}",
            )
        return _json_response(compact_json(json_format.MessageToDict(response)))

    async def workflow_terminate(self, request: web.Request) -> web.Response:
        await wf.workflow_terminate(self.engine, instance_id=request.match_info["instance_id"])
        return _accepted()

    async def workflow_pause(self, request: web.Request) -> web.Response:
        await wf.workflow_pause(self.engine, instance_id=request.match_info["instance_id"])
        return _accepted()

    async def workflow_resume(self, request: web.Request) -> web.Response:
        await wf.workflow_resume(self.engine, instance_id=request.match_info["instance_id"])
        return _accepted()

    async def workflow_purge(self, request: web.Request) -> web.Response:
        await wf.workflow_purge(self.engine, instance_id=request.match_info["instance_id"])
        return _accepted()

    async def workflow_raise_event(self, request: web.Request) -> web.Response:
        await wf.workflow_raise_event(
            self.engine,
            instance_id=request.match_info["instance_id"],
            event_name=request.match_info["event"],
            event_data=await read_raw(request),
        )
        return _accepted()

    # -- state ----------------------------------------------------------------------------------

    async def state_save(self, request: web.Request) -> web.Response:
        store = request.match_info["store"]
        self.state.check_store(store)
        body = await read_json(request, prefix="")
        if not isinstance(body, list):
            raise MalformedRequest("the request body must be a JSON array of state items")
        items = []
        for entry in body:
            item = as_object(entry, "state item")
            if not item.get("key"):
                raise MalformedRequest('"key" is a required field')
            items.append(set_request(item))
        await self.state.save(store, items)
        return web.Response(status=204)

    async def state_get(self, request: web.Request) -> web.Response:
        entry = await self.state.get(request.match_info["store"], request.match_info["key"])
        if entry.value is None:
            return web.Response(status=204)
        return web.Response(
            body=entry.value,
            content_type="application/json",
            headers={"ETag": entry.etag or ""},
        )

    async def state_delete(self, request: web.Request) -> web.Response:
        # daprd reads the ETag from If-Match verbatim (no quotes stripped).
        await self.state.delete(
            request.match_info["store"],
            DeleteRequest(
                key=request.match_info["key"],
                etag=request.headers.get("If-Match"),
                concurrency=request.query.get("concurrency", ""),
            ),
        )
        return web.Response(status=204)

    async def state_bulk(self, request: web.Request) -> web.Response:
        store = request.match_info["store"]
        self.state.check_store(store)
        body = as_object(await read_json(request), "request body")
        keys = body.get("keys") or []
        if not isinstance(keys, list):
            raise MalformedRequest('failed deserializing HTTP body: "keys" must be strings')
        entries = await self.state.get_bulk(store, [as_text(k, "keys") for k in keys])
        return _json_response("[" + ",".join(_bulk_item(e) for e in entries) + "]")

    async def state_transaction(self, request: web.Request) -> web.Response:
        store = request.match_info["store"]
        self.state.check_store(store)
        body = as_object(await read_json(request), "request body")
        entries = body.get("operations") or []
        if not isinstance(entries, list):
            raise MalformedRequest('failed deserializing HTTP body: "operations" must be an array')
        operations: list[SetRequest | DeleteRequest] = []
        for entry in entries:
            operation = as_object(entry, "operation")
            kind = operation.get("operation")
            inner = as_object(operation.get("request") or {}, "operation request")
            if kind == "upsert":
                operations.append(set_request(inner))
            elif kind == "delete":
                operations.append(
                    DeleteRequest(
                        key=text_field(inner, "key"),
                        etag=optional_text_field(inner, "etag"),
                        concurrency=concurrency(inner),
                    )
                )
            else:
                raise UnsupportedOperation(str(kind))
        await self.state.transact(store, operations)
        return web.Response(status=204)

    # -- health and metadata --------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def metadata_get(self, request: web.Request) -> web.Response:
        response = runtime_metadata(self.engine, self.state, self.extended)
        body: dict[str, Any] = {
            "runtimeVersion": response.runtime_version,
            "components": [
                {
                    "name": c.name,
                    "type": c.type,
                    "version": c.version,
                    "capabilities": list(c.capabilities),
                }
                for c in response.registered_components
            ],
        }
        if response.extended_metadata:
            body["extended"] = dict(response.extended_metadata)
        if response.workflows.connected_workers:
            body["workflows"] = {"connectedWorkers": response.workflows.connected_workers}
        return _json_response(compact_json(body))

    async def metadata_put(self, request: web.Request) -> web.Response:
        # daprd keeps the raw bytes (a Go string) and its JSON answer replaces what is not
        # UTF-8 with U+FFFD; replaced here once, on the way in.
        value = (await read_raw(request)).decode("utf-8", errors="replace")
        set_extended_metadata(self.extended, request.match_info["key"], value)
        return web.Response(status=204)


def _accepted() -> web.Response:
    # daprd serialises the handlers' google.protobuf.Empty with protojson: "{}".
    return _json_response("{}", status=202)


def _bulk_item(entry: StateEntry) -> str:
    """One bulk result as JSON text; ``data`` is the stored JSON embedded verbatim, as daprd's
    ``json.RawMessage`` does, and is left out (with the ETag) for a missing key."""
    key = compact_json(entry.key)
    if entry.value is None:
        return f'{{"key":{key}}}'
    text = entry.value.decode("utf-8", errors="replace")
    # Bytes saved over gRPC need not be JSON; daprd would write them raw and break the
    # response. We send them as a JSON string instead, so the array stays parseable.
    data = text if is_strict_json(text) else compact_json(text)
    return f'{{"key":{key},"data":{data},"etag":{compact_json(entry.etag)}}}'
