"""The Dapr runtime API over gRPC (``dapr.proto.runtime.v1.Dapr``): workflow Alpha1/Beta1, state
and metadata.

This is what ``DaprClient`` (gRPC) talks to. Every method daprd has but we do not serve answers
UNIMPLEMENTED. Errors carry daprd's status code and message, plus a ``google.rpc.ErrorInfo``
detail (domain ``dapr.io``, reason = daprd's error code or reason) as daprd's kit errors do, so
``DaprGrpcError.get_error_info()`` in the SDK works. The API token, when set, is checked by the
server's interceptor for every service on the port (``sidecar.server.TokenInterceptor``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable
from typing import Any, NoReturn

import grpc
from dapr.proto import api_v1, common_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2, status_pb2

from sidecar.dapr import workflow_management as wf
from sidecar.dapr.metadata import runtime_metadata, set_extended_metadata
from sidecar.dapr.state_store import (
    FIRST_WRITE,
    LAST_WRITE,
    DeleteRequest,
    SetRequest,
    StateError,
    StateStore,
    UnsupportedOperation,
)
from sidecar.engine.interface import WorkflowEngine
from sidecar.errors import SidecarError

log = logging.getLogger("sidecar.dapr_api")

_CONCURRENCY = {
    common_v1.StateOptions.CONCURRENCY_UNSPECIFIED: "",
    common_v1.StateOptions.CONCURRENCY_FIRST_WRITE: FIRST_WRITE,
    common_v1.StateOptions.CONCURRENCY_LAST_WRITE: LAST_WRITE,
}


async def abort(
    context: grpc.aio.ServicerContext, exc: SidecarError, *, error_info: bool = True
) -> NoReturn:
    """End the call with ``exc`` as daprd would: status code, message, ErrorInfo detail.
    daprd's workflow methods answer with a bare status (``error_info=False``): no detail."""
    code = grpc.StatusCode[exc.code]
    message = getattr(exc, "message", str(exc))
    status = status_pb2.Status(code=code.value[0], message=message)
    reason = getattr(exc, "reason", None) if error_info else None
    if reason:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="dapr.io"))
    await context.abort(
        code, message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
    )
    raise AssertionError("context.abort returned")  # it raises; this keeps the type NoReturn


class DaprServicer(dapr_pb2_grpc.DaprServicer):
    def __init__(self, engine: WorkflowEngine, state: StateStore, extended: dict[str, str]) -> None:
        self.engine = engine
        self.state = state
        self.extended = extended

    # -- workflows (daprd: Alpha1 and Beta1 are the same handler) -----------------------------

    async def StartWorkflowBeta1(  # noqa: N802 - gRPC method names
        self, request: api_v1.StartWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> api_v1.StartWorkflowResponse:
        try:
            instance_id = await wf.workflow_start(
                self.engine,
                instance_id=request.instance_id,
                name=request.workflow_name,
                input=request.input,
                options=dict(request.options),
            )
        except SidecarError as exc:
            await abort(context, wf.as_api_error(exc), error_info=False)
        return api_v1.StartWorkflowResponse(instance_id=instance_id)

    async def GetWorkflowBeta1(  # noqa: N802
        self, request: api_v1.GetWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> api_v1.GetWorkflowResponse:
        try:
            response = await wf.workflow_get(self.engine, instance_id=request.instance_id)
        except SidecarError as exc:
            await abort(context, wf.as_api_error(exc), error_info=False)
        # daprd ≥1.16: an unknown instance is OK with only the instance ID set.
        return response or api_v1.GetWorkflowResponse(instance_id=request.instance_id)

    async def TerminateWorkflowBeta1(  # noqa: N802
        self, request: api_v1.TerminateWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await _empty(
            context, wf.workflow_terminate(self.engine, instance_id=request.instance_id)
        )

    async def RaiseEventWorkflowBeta1(  # noqa: N802
        self, request: api_v1.RaiseEventWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await _empty(
            context,
            wf.workflow_raise_event(
                self.engine,
                instance_id=request.instance_id,
                event_name=request.event_name,
                event_data=request.event_data,
            ),
        )

    async def PauseWorkflowBeta1(  # noqa: N802
        self, request: api_v1.PauseWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await _empty(
            context, wf.workflow_pause(self.engine, instance_id=request.instance_id)
        )

    async def ResumeWorkflowBeta1(  # noqa: N802
        self, request: api_v1.ResumeWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await _empty(
            context, wf.workflow_resume(self.engine, instance_id=request.instance_id)
        )

    async def PurgeWorkflowBeta1(  # noqa: N802
        self, request: api_v1.PurgeWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        return await _empty(
            context, wf.workflow_purge(self.engine, instance_id=request.instance_id)
        )

    StartWorkflowAlpha1 = StartWorkflowBeta1
    GetWorkflowAlpha1 = GetWorkflowBeta1
    TerminateWorkflowAlpha1 = TerminateWorkflowBeta1
    RaiseEventWorkflowAlpha1 = RaiseEventWorkflowBeta1
    PauseWorkflowAlpha1 = PauseWorkflowBeta1
    ResumeWorkflowAlpha1 = ResumeWorkflowBeta1
    PurgeWorkflowAlpha1 = PurgeWorkflowBeta1

    # -- state ----------------------------------------------------------------------------------

    async def GetState(  # noqa: N802
        self, request: api_v1.GetStateRequest, context: grpc.aio.ServicerContext
    ) -> api_v1.GetStateResponse:
        try:
            entry = await self.state.get(request.store_name, request.key)
        except StateError as exc:
            await abort(context, exc)
        # A missing key is OK with empty data and etag (daprd builds the reply from an empty
        # GetResponse); the SDK hands that to the app as b"".
        return api_v1.GetStateResponse(data=entry.value or b"", etag=entry.etag or "")

    async def GetBulkState(  # noqa: N802
        self, request: api_v1.GetBulkStateRequest, context: grpc.aio.ServicerContext
    ) -> api_v1.GetBulkStateResponse:
        try:
            entries = await self.state.get_bulk(request.store_name, list(request.keys))
        except StateError as exc:
            await abort(context, exc)
        return api_v1.GetBulkStateResponse(
            items=[
                api_v1.BulkStateItem(key=e.key, data=e.value or b"", etag=e.etag or "")
                for e in entries
            ]
        )

    async def SaveState(  # noqa: N802
        self, request: api_v1.SaveStateRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            await self.state.save(request.store_name, [_set_request(s) for s in request.states])
        except StateError as exc:
            await abort(context, exc)
        return empty_pb2.Empty()

    async def DeleteState(  # noqa: N802
        self, request: api_v1.DeleteStateRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        delete = DeleteRequest(
            key=request.key,
            etag=request.etag.value if request.HasField("etag") else None,
            concurrency=_CONCURRENCY.get(request.options.concurrency, ""),
        )
        try:
            await self.state.delete(request.store_name, delete)
        except StateError as exc:
            await abort(context, exc)
        return empty_pb2.Empty()

    async def DeleteBulkState(  # noqa: N802
        self, request: api_v1.DeleteBulkStateRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        deletes = [_delete_request(s) for s in request.states]
        try:
            await self.state.delete_bulk(request.store_name, deletes)
        except StateError as exc:
            await abort(context, exc)
        return empty_pb2.Empty()

    async def ExecuteStateTransaction(  # noqa: N802
        self, request: api_v1.ExecuteStateTransactionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            self.state.check_store(request.storeName)
            operations: list[SetRequest | DeleteRequest] = []
            for op in request.operations:
                if op.operationType == "upsert":
                    operations.append(_set_request(op.request))
                elif op.operationType == "delete":
                    operations.append(_delete_request(op.request))
                else:
                    raise UnsupportedOperation(op.operationType)
            await self.state.transact(request.storeName, operations)
        except SidecarError as exc:
            await abort(context, exc)
        return empty_pb2.Empty()

    # -- metadata -------------------------------------------------------------------------------

    async def GetMetadata(  # noqa: N802
        self, request: api_v1.GetMetadataRequest, context: grpc.aio.ServicerContext
    ) -> api_v1.GetMetadataResponse:
        return runtime_metadata(self.engine, self.state, self.extended)

    async def SetMetadata(  # noqa: N802
        self, request: api_v1.SetMetadataRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        try:
            set_extended_metadata(self.extended, request.key, request.value)
        except SidecarError as exc:
            await abort(context, exc)
        return empty_pb2.Empty()


def _set_request(item: common_v1.StateItem) -> SetRequest:
    return SetRequest(
        key=item.key,
        value=item.value,
        etag=item.etag.value if item.HasField("etag") else None,
        concurrency=_CONCURRENCY.get(item.options.concurrency, ""),
    )


def _delete_request(item: common_v1.StateItem) -> DeleteRequest:
    return DeleteRequest(
        key=item.key,
        etag=item.etag.value if item.HasField("etag") else None,
        concurrency=_CONCURRENCY.get(item.options.concurrency, ""),
    )


async def _empty(context: grpc.aio.ServicerContext, call: Awaitable[None]) -> empty_pb2.Empty:
    """A workflow method with an empty answer; its errors carry no ErrorInfo, as daprd's."""
    try:
        await call
    except SidecarError as exc:
        await abort(context, wf.as_api_error(exc), error_info=False)
    return empty_pb2.Empty()


def _unimplemented(name: str) -> Any:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{name} is not implemented by the embedded sidecar",
        )

    return handler


def add_dapr_servicer(
    server: Any,
    engine: WorkflowEngine,
    state: StateStore,
    *,
    extended_metadata: dict[str, str] | None = None,
) -> None:
    """Serve ``dapr.proto.runtime.v1.Dapr`` on ``server`` (grpc.aio, on the engine's loop).

    ``extended_metadata`` is the dict SetMetadata writes and GetMetadata reports; pass the same
    dict to ``runtime_http.create_app`` to share it between the edges.
    """
    servicer = DaprServicer(
        engine, state, extended_metadata if extended_metadata is not None else {}
    )
    # The generated base class answers with synchronous methods, which grpc.aio cannot run
    # without a thread pool; give every method we do not serve an async UNIMPLEMENTED instead.
    for name, member in inspect.getmembers(dapr_pb2_grpc.DaprServicer, inspect.isfunction):
        if name.startswith("_"):
            continue
        if getattr(type(servicer), name) is member:
            setattr(servicer, name, _unimplemented(name))
    dapr_pb2_grpc.add_DaprServicer_to_server(servicer, server)
