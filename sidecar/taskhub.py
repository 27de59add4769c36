"""gRPC edge for ``TaskHubSidecarService``, the protocol ``dapr.ext.workflow`` speaks.

Each method parses its request, calls one engine operation and maps ``SidecarError`` to a gRPC
status. The messages are durabletask's (dapr/durabletask-protobuf orchestrator_service.proto,
compiled into dapr.ext.workflow); what each call does follows daprd and durabletask-go's
executor (backend/executor.go). The engine is typed as ``engine.interface.TaskHubEngine``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

import grpc
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf import empty_pb2

from sidecar.engine.instance import check_instance_id, check_timestamp
from sidecar.engine.interface import TaskHubEngine
from sidecar.engine.status import InstanceInfo
from sidecar.errors import SidecarError

log = logging.getLogger("sidecar.taskhub")

T = TypeVar("T")


async def call_engine(context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
    """Await an engine operation; turn its ``SidecarError`` into the matching gRPC status."""
    try:
        return await work
    except SidecarError as exc:
        await context.abort(grpc.StatusCode[exc.code], str(exc))
        raise  # unreachable: abort raises


def run_engine(context: grpc.aio.ServicerContext, fn: Callable[[], T]) -> Awaitable[T]:
    async def wrapped() -> T:
        return fn()

    return call_engine(context, wrapped())


def _sv(value: str | None) -> Any:
    return None if value is None else pb.wrappers_pb2.StringValue(value=value)


def _opt(message: Any, name: str) -> str | None:
    return getattr(message, name).value if message.HasField(name) else None


def _trace_parent(request: pb.CreateInstanceRequest) -> pb.TraceContext | None:
    """The workflow's parent span when the request names one (else the engine takes the traced
    call's span), as durabletask-go's executor (backend/executor.go StartInstance) does."""
    if request.HasField("parentTraceContext") and request.parentTraceContext.traceParent:
        return request.parentTraceContext
    return None


def workflow_state(info: InstanceInfo, with_payloads: bool) -> pb.WorkflowState:
    state = pb.WorkflowState(
        instanceId=info.instance_id,
        name=info.name,
        workflowStatus=info.status,  # type: ignore[arg-type]
    )
    state.createdTimestamp.FromDatetime(info.created_at)
    state.lastUpdatedTimestamp.FromDatetime(info.updated_at)
    if info.version:
        state.version.value = info.version
    if info.parent_instance_id:
        state.parentInstanceId.value = info.parent_instance_id
    if with_payloads:
        if info.input is not None:
            state.input.value = info.input
        if info.output is not None:
            state.output.value = info.output
        if info.custom_status is not None:
            state.customStatus.value = info.custom_status
        if info.failure is not None:
            state.failureDetails.CopyFrom(info.failure)
    return state


def instance_response(info: InstanceInfo | None, with_payloads: bool) -> pb.GetInstanceResponse:
    if info is None:
        return pb.GetInstanceResponse(exists=False)
    return pb.GetInstanceResponse(exists=True, workflowState=workflow_state(info, with_payloads))


class TaskHubServicer(stubs.TaskHubSidecarServiceServicer):
    def __init__(self, engine: TaskHubEngine) -> None:
        self.engine = engine

    async def Hello(self, request: empty_pb2.Empty, context: Any) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    async def StartInstance(
        self, request: pb.CreateInstanceRequest, context: Any
    ) -> pb.CreateInstanceResponse:
        scheduled = None
        if request.HasField("scheduledStartTimestamp"):
            await run_engine(
                context,
                lambda: check_timestamp(request.scheduledStartTimestamp, "scheduledStartTimestamp"),
            )
            scheduled = request.scheduledStartTimestamp.ToDatetime(tzinfo=UTC)
        instance_id = await call_engine(
            context,
            self.engine.start_instance(
                instance_id=request.instanceId,
                name=request.name,
                input=_opt(request, "input"),
                scheduled_start=scheduled,
                version=_opt(request, "version") or None,
                trace_parent=_trace_parent(request),
            ),
        )
        return pb.CreateInstanceResponse(instanceId=instance_id)

    async def GetInstance(
        self, request: pb.GetInstanceRequest, context: Any
    ) -> pb.GetInstanceResponse:
        info = await run_engine(context, lambda: self._get(request.instanceId))
        return instance_response(info, request.getInputsAndOutputs)

    def _get(self, instance_id: str) -> InstanceInfo | None:
        check_instance_id(instance_id)
        return self.engine.get_instance(instance_id)

    async def WaitForInstanceStart(
        self, request: pb.GetInstanceRequest, context: Any
    ) -> pb.GetInstanceResponse:
        info = await call_engine(
            context, self.engine.wait_for_instance(request.instanceId, until="start")
        )
        return instance_response(info, request.getInputsAndOutputs)

    async def WaitForInstanceCompletion(
        self, request: pb.GetInstanceRequest, context: Any
    ) -> pb.GetInstanceResponse:
        info = await call_engine(
            context, self.engine.wait_for_instance(request.instanceId, until="completion")
        )
        return instance_response(info, request.getInputsAndOutputs)

    async def RaiseEvent(self, request: pb.RaiseEventRequest, context: Any) -> Any:
        await call_engine(
            context,
            self.engine.raise_event(request.instanceId, request.name, _opt(request, "input")),
        )
        return pb.RaiseEventResponse()

    async def TerminateInstance(self, request: pb.TerminateRequest, context: Any) -> Any:
        await call_engine(
            context,
            self.engine.terminate(
                request.instanceId, output=_opt(request, "output"), recursive=request.recursive
            ),
        )
        return pb.TerminateResponse()

    async def SuspendInstance(self, request: pb.SuspendRequest, context: Any) -> Any:
        await call_engine(context, self.engine.suspend(request.instanceId, _opt(request, "reason")))
        return pb.SuspendResponse()

    async def ResumeInstance(self, request: pb.ResumeRequest, context: Any) -> Any:
        await call_engine(context, self.engine.resume(request.instanceId, _opt(request, "reason")))
        return pb.ResumeResponse()

    async def PurgeInstances(
        self, request: pb.PurgeInstancesRequest, context: Any
    ) -> pb.PurgeInstancesResponse:
        if request.WhichOneof("request") != "instanceId":
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "multi-instance purge is not implemented"
            )
        count = await call_engine(
            context, self.engine.purge(request.instanceId, recursive=request.recursive)
        )
        return pb.PurgeInstancesResponse(
            deletedInstanceCount=count, isComplete=pb.wrappers_pb2.BoolValue(value=True)
        )

    async def ListInstanceIDs(
        self, request: pb.ListInstanceIDsRequest, context: Any
    ) -> pb.ListInstanceIDsResponse:
        page_size = request.pageSize if request.HasField("pageSize") else None
        token = request.continuationToken if request.HasField("continuationToken") else None
        ids, next_token = await run_engine(
            context,
            lambda: self.engine.list_instance_ids(page_size=page_size, continuation_token=token),
        )
        response = pb.ListInstanceIDsResponse(instanceIds=ids)
        if next_token is not None:
            response.continuationToken = next_token
        return response

    async def GetInstanceHistory(
        self, request: pb.GetInstanceHistoryRequest, context: Any
    ) -> pb.GetInstanceHistoryResponse:
        events = await run_engine(context, lambda: self.engine.get_history(request.instanceId))
        return pb.GetInstanceHistoryResponse(events=events)

    async def RerunWorkflowFromEvent(
        self, request: pb.RerunWorkflowFromEventRequest, context: Any
    ) -> pb.RerunWorkflowFromEventResponse:
        new_id = await call_engine(
            context,
            self.engine.rerun_from_event(
                request.sourceInstanceID,
                request.eventID,
                new_instance_id=(
                    request.newInstanceID if request.HasField("newInstanceID") else None
                ),
                input=_opt(request, "input"),
                overwrite_input=request.overwriteInput,
                new_child_instance_id=(
                    request.newChildWorkflowInstanceID
                    if request.HasField("newChildWorkflowInstanceID")
                    else None
                ),
            ),
        )
        return pb.RerunWorkflowFromEventResponse(newInstanceID=new_id)

    async def GetWorkItems(self, request: pb.GetWorkItemsRequest, context: Any) -> None:
        """Stream work items to one worker until it goes away or the sidecar stops.

        Written with ``context.write`` rather than as an async generator, and the stream is
        also closed from the RPC's done callback: whatever way the call ends (the worker was
        killed, the connection broke), what was sent on it is handed out again promptly.
        """
        stream = self.engine.open_stream(request.capabilities)
        context.add_done_callback(lambda _: self.engine.close_stream(stream))
        try:
            while True:
                item = await stream.queue.get()
                if item is None:
                    return
                await context.write(item)
        finally:
            self.engine.close_stream(stream)

    async def CompleteActivityTask(self, request: pb.ActivityResponse, context: Any) -> Any:
        await call_engine(context, self.engine.complete_activity(request))
        return pb.CompleteTaskResponse()

    async def CompleteOrchestratorTask(self, request: pb.WorkflowResponse, context: Any) -> Any:
        await call_engine(context, self.engine.complete_turn(request))
        return pb.CompleteTaskResponse()

    async def CompleteWorkflowTask(self, request: pb.WorkflowResponse, context: Any) -> Any:
        return await self.CompleteOrchestratorTask(request, context)


def add_taskhub_servicer(server: Any, engine: TaskHubEngine) -> None:
    """Serve ``TaskHubSidecarService`` on ``server`` (a grpc.aio server or a registrar of one)."""
    stubs.add_TaskHubSidecarServiceServicer_to_server(TaskHubServicer(engine), server)


__all__ = ["add_taskhub_servicer", "call_engine", "instance_response", "workflow_state"]
