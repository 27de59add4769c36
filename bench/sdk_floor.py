"""The SDK's floor: ``python -m bench.sdk_floor --port P``, a backend that does almost nothing.

It speaks just enough of Dapr's workflow protocol for the benchmark's order workflow (start,
wait for completion, the work-item stream, activity and turn completions), keeps instances in
a dict, never writes anything, checks nothing and forgets nothing; like the sidecar, it sends
a worker that caches histories only the events it has not seen. It is not a sidecar: it
exists so the benchmark can show what ``dapr.ext.workflow``'s worker and client cost on their
own, over the same gRPC transport, on the same machine, in the same run. The embedded
sidecar's figures are read against it ("close to the SDK's ceiling").
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from typing import Any

import grpc
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf import empty_pb2

from sidecar.server import GenericHandlersOnly, new_event_loop


def _event(event_id: int = -1, **kind: Any) -> pb.HistoryEvent:
    event = pb.HistoryEvent(eventId=event_id, **kind)
    event.timestamp.GetCurrentTime()
    return event


class _Instance:
    def __init__(self, instance_id: str, name: str, queue: asyncio.Queue[pb.WorkItem]) -> None:
        self.instance_id = instance_id
        self.name = name
        self.queue = queue  # the stream of the worker that runs everything of this instance
        self.history: list[pb.HistoryEvent] = []
        self.cached = 0  # how many history events that worker has cached (stateful history)
        self.dispatched: list[pb.HistoryEvent] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class FloorServicer(stubs.TaskHubSidecarServiceServicer):
    """Each instance is pinned to one worker stream (round robin), so a turn carries only the
    events that worker has not cached, as the sidecar does for a stateful-history worker."""

    def __init__(self) -> None:
        self.streams: list[asyncio.Queue[pb.WorkItem]] = []
        self.next_stream = itertools.count()
        self.instances: dict[str, _Instance] = {}
        self.tokens = itertools.count(1)

    def _send_turn(self, inst: _Instance, new_events: list[pb.HistoryEvent]) -> None:
        request = pb.WorkflowRequest(instanceId=inst.instance_id)
        if inst.cached:
            request.cachedHistory.eventCount = inst.cached
        request.pastEvents.extend(inst.history[inst.cached :])
        request.newEvents.append(_event(workflowStarted=pb.WorkflowStartedEvent()))
        request.newEvents.extend(new_events)
        inst.cached = len(inst.history)  # the worker caches the past events it replays
        inst.dispatched = list(request.newEvents)
        inst.queue.put_nowait(
            pb.WorkItem(workflowRequest=request, completionToken=str(next(self.tokens)))
        )

    async def Hello(self, request: Any, context: Any) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    async def StartInstance(self, request: Any, context: Any) -> pb.CreateInstanceResponse:
        if not self.streams:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no worker connected")
        queue = self.streams[next(self.next_stream) % len(self.streams)]
        inst = _Instance(request.instanceId, request.name, queue)
        self.instances[inst.instance_id] = inst
        started = pb.ExecutionStartedEvent(
            name=request.name,
            input=request.input,
            workflowInstance=pb.WorkflowInstance(instanceId=inst.instance_id),
        )
        self._send_turn(inst, [_event(executionStarted=started)])
        return pb.CreateInstanceResponse(instanceId=inst.instance_id)

    async def WaitForInstanceCompletion(self, request: Any, context: Any) -> Any:
        inst = self.instances[request.instanceId]
        await inst.done
        state = pb.WorkflowState(
            instanceId=inst.instance_id,
            name=inst.name,
            workflowStatus=pb.ORCHESTRATION_STATUS_COMPLETED,
        )
        return pb.GetInstanceResponse(exists=True, workflowState=state)

    async def GetWorkItems(self, request: Any, context: Any) -> None:
        queue: asyncio.Queue[pb.WorkItem] = asyncio.Queue()
        self.streams.append(queue)
        while True:
            await context.write(await queue.get())

    async def GetInstanceHistory(self, request: Any, context: Any) -> Any:
        """What a worker asks for when its cache misses (it never should here)."""
        inst = self.instances[request.instanceId]
        return pb.GetInstanceHistoryResponse(events=inst.history[: inst.cached])

    async def CompleteOrchestratorTask(self, request: Any, context: Any) -> Any:
        inst = self.instances[request.instanceId]
        inst.history.extend(inst.dispatched)
        for action in request.actions:
            if action.HasField("scheduleTask"):
                task = action.scheduleTask
                inst.history.append(
                    _event(
                        action.id,
                        taskScheduled=pb.TaskScheduledEvent(name=task.name, input=task.input),
                    )
                )
                activity = pb.ActivityRequest(
                    name=task.name,
                    taskId=action.id,
                    input=task.input,
                    workflowInstance=pb.WorkflowInstance(instanceId=inst.instance_id),
                )
                inst.queue.put_nowait(
                    pb.WorkItem(activityRequest=activity, completionToken=str(next(self.tokens)))
                )
            elif action.HasField("completeWorkflow") and not inst.done.done():
                inst.done.set_result(None)
        return pb.CompleteTaskResponse()

    async def CompleteActivityTask(self, request: Any, context: Any) -> Any:
        inst = self.instances[request.instanceId]
        completed = pb.TaskCompletedEvent(taskScheduledId=request.taskId, result=request.result)
        self._send_turn(inst, [_event(taskCompleted=completed)])
        return pb.CompleteTaskResponse()


async def serve(port: int) -> None:
    server = grpc.aio.server()
    # As the sidecar does: without "registered methods" grpc.aio's accept loop stays O(1).
    stubs.add_TaskHubSidecarServiceServicer_to_server(FloorServicer(), GenericHandlersOnly(server))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_floor")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
