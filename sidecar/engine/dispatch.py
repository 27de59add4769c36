"""Dispatch: hand workflow turns and activities to the workers' GetWorkItems streams, and keep
the books on what is in flight.

Rules (as durabletask-go's executor, backend/executor.go, and daprd's workflow engine, dapr/dapr
pkg/runtime/wfengine, hand out work items; docs/sidecar-internals.md, "Dispatch"):

* one turn per instance in flight at a time; events that arrive meanwhile wait for the next;
* activities run in parallel, on whichever stream is least busy;
* everything sent on a stream that ends and was not completed is handed out again, so
  activities run at least once;
* a turn goes back to the stream that ran the instance's previous turn when that stream
  advertised stateful history, so only new events need to be sent (durabletask-go's
  executor_stateful.go; the SDK rebuilds the rest from its cache);
* a turn whose work item would be larger than a worker can be sent (engine/payload.py) is
  never sent: the engine fails the instance instead (``on_oversized``), as daprd's orchestrator
  checks the size before it schedules a run.

The dispatcher alone knows which instances have a turn queued or in flight (``turn_of``,
``turn_due``); ``Instance`` holds none of it. Nothing here touches the database: the engine
persists before or alongside what it queues here.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine import payload
from sidecar.engine.instance import Instance, now_ns, string_value
from sidecar.errors import InvalidArgument

log = logging.getLogger("sidecar.dispatch")

STATEFUL_HISTORY = pb.WORKER_CAPABILITY_STATEFUL_HISTORY


class WorkStream:
    """One worker's GetWorkItems stream: a FIFO of work items and what is outstanding on it."""

    _ids = itertools.count(1)

    def __init__(self, capabilities: Iterable[int]) -> None:
        self.id = next(self._ids)
        self.queue: asyncio.Queue[pb.WorkItem | None] = asyncio.Queue()
        self.stateful = STATEFUL_HISTORY in set(capabilities)
        self.turns: set[str] = set()  # instance ids with a turn in flight on this stream
        self.activities: set[str] = set()  # activity tokens in flight on this stream
        self.warm: dict[str, int] = {}  # instance id -> history length the worker has cached
        self.closed = False

    @property
    def outstanding(self) -> int:
        return len(self.turns) + len(self.activities)


@dataclass
class Turn:
    """A workflow work item in flight: what was sent and to whom."""

    token: str
    stream: WorkStream
    started: pb.HistoryEvent
    dispatched: list[tuple[int, pb.HistoryEvent]]
    past_count: int


@dataclass
class ActivityFlight:
    instance_id: str
    execution_id: str
    task_id: int
    stream: WorkStream
    sent_ns: int  # when it was sent (the observers' activity latency starts here)


class Dispatcher:
    """Queues of ready turns and pending activities, the open streams, and what is in flight."""

    def __init__(self, instances: dict[str, Instance], max_outstanding_per_stream: int) -> None:
        self.instances = instances  # the engine's active instances, shared
        self.max_outstanding = max_outstanding_per_stream
        self.streams: list[WorkStream] = []
        self._ready: deque[str] = deque()
        self._activities: deque[tuple[str, str, int]] = deque()
        self._flights: dict[str, ActivityFlight] = {}
        self._flight_tokens: dict[tuple[str, str, int], str] = {}
        self._turns: dict[str, Turn] = {}  # instance id -> its one turn in flight
        # Instance id -> the instance waiting in _ready for a stream. The object, not just the
        # id: an instance evicted while queued must not make a new instance of its id look
        # queued (one with a scheduled start would be sent its turn early).
        self._queued: dict[str, Instance] = {}
        # Instances whose next work item would not fit (engine/payload.py): never sent, but
        # handed to ``on_oversized`` (the engine fails them); counted as a turn due meanwhile.
        self.on_oversized: Callable[[Instance, int], Awaitable[None]] | None = None
        self._oversized: dict[str, Instance] = {}
        self._failing: set[asyncio.Future[None]] = set()
        self._boot = uuid.uuid4().hex[:12]
        self._tokens = itertools.count(1)
        self._pump_scheduled = False
        self.closing = False

    # -- streams ---------------------------------------------------------------------------------

    def open_stream(self, capabilities: Iterable[int]) -> WorkStream:
        stream = WorkStream(capabilities)
        self.streams.append(stream)
        log.info("worker connected (stream %d); %d stream(s) open", stream.id, len(self.streams))
        self.schedule_pump()
        return stream

    def close_stream(self, stream: WorkStream) -> None:
        """The stream ended: everything sent on it and not completed is handed out again."""
        if stream.closed:
            return
        stream.closed = True
        self.streams.remove(stream)
        for iid in stream.turns:
            turn = self._turns.get(iid)
            if turn is not None and turn.stream is stream:
                del self._turns[iid]
                inst = self.instances.get(iid)
                if inst is not None:
                    self.make_ready(inst)
        for token in stream.activities:
            flight = self._flights.pop(token, None)
            if flight is not None:
                self._flight_tokens.pop(
                    (flight.instance_id, flight.execution_id, flight.task_id), None
                )
                self._activities.appendleft(
                    (flight.instance_id, flight.execution_id, flight.task_id)
                )
        log.info(
            "worker disconnected (stream %d); %d turn(s) and %d activities handed out again",
            stream.id,
            len(stream.turns),
            len(stream.activities),
        )
        stream.turns.clear()
        stream.activities.clear()
        self.schedule_pump()

    def close(self) -> None:
        """End every stream: workers reconnect to whichever sidecar comes next."""
        self.closing = True
        for stream in list(self.streams):
            stream.queue.put_nowait(None)

    # -- queues ----------------------------------------------------------------------------------

    def turn_of(self, instance_id: str) -> Turn | None:
        """The instance's turn in flight, if a worker has one."""
        return self._turns.get(instance_id)

    def turn_due(self, inst: Instance) -> bool:
        """Whether a turn of ``inst`` is queued for a stream or in flight on one."""
        iid = inst.instance_id
        return (
            self._queued.get(iid) is inst or iid in self._turns or self._oversized.get(iid) is inst
        )

    def make_ready(self, inst: Instance) -> None:
        """Queue a turn for ``inst`` if it has events to deliver and nothing in flight."""
        if (
            self.turn_due(inst)
            or inst.done
            or not inst.inbox
            or inst.stalled is not None
            or inst.scheduled_start_ns is not None
        ):
            return
        self._queued[inst.instance_id] = inst
        self._ready.append(inst.instance_id)
        self.schedule_pump()

    def queue_activity(self, inst: Instance, task_id: int) -> None:
        self._activities.append((inst.instance_id, inst.execution_id, task_id))
        self.schedule_pump()

    def schedule_pump(self) -> None:
        if not self._pump_scheduled and not self.closing:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pick_stream(self, preferred: WorkStream | None = None) -> WorkStream | None:
        if (
            preferred is not None
            and not preferred.closed
            and preferred.outstanding < self.max_outstanding
        ):
            return preferred
        best = None
        for stream in self.streams:
            if stream.outstanding < self.max_outstanding and (
                best is None or stream.outstanding < best.outstanding
            ):
                best = stream
        return best

    def _warm_stream(self, instance_id: str) -> WorkStream | None:
        for stream in self.streams:
            if instance_id in stream.warm:
                return stream
        return None

    def _pump(self) -> None:
        """Hand queued turns and activities to the least busy streams."""
        self._pump_scheduled = False
        while self._ready and self.streams:
            iid = self._ready[0]
            inst = self.instances.get(iid)
            queued = self._queued.get(iid)
            if inst is None or queued is not inst:
                self._ready.popleft()
                if queued is not None:
                    del self._queued[iid]  # queued by an instance since evicted or replaced
                continue
            del self._queued[iid]
            if iid in self._turns or inst.done or not inst.inbox or inst.stalled is not None:
                self._ready.popleft()
                continue
            size = payload.instance_bytes(inst)
            if not payload.fits(size) and self.on_oversized is not None:
                self._ready.popleft()
                self._fail_oversized(inst, size)
                continue
            stream = self._pick_stream(self._warm_stream(iid))
            if stream is None:
                self._queued[iid] = inst
                break
            self._ready.popleft()
            self._send_turn(inst, stream)
        while self._activities and self.streams:
            iid, execution_id, task_id = self._activities[0]
            inst = self.instances.get(iid)
            if (
                inst is None
                or inst.done
                or inst.execution_id != execution_id
                or task_id not in inst.activities
                or (iid, execution_id, task_id) in self._flight_tokens
            ):
                self._activities.popleft()
                continue
            stream = self._pick_stream()
            if stream is None:
                break
            self._activities.popleft()
            self._send_activity(inst, task_id, stream)

    def _fail_oversized(self, inst: Instance, size: int) -> None:
        """Hand ``inst`` to ``on_oversized`` instead of a worker: a stream must never be sent an
        item it cannot receive (the SDK's stream would break and fetch it again, for ever)."""
        assert self.on_oversized is not None
        self._oversized[inst.instance_id] = inst

        def settled(task: asyncio.Future[None]) -> None:
            self._failing.discard(task)
            if self._oversized.get(inst.instance_id) is inst:
                del self._oversized[inst.instance_id]
            if not task.cancelled() and task.exception() is not None:
                log.error("could not fail workflow %s: %s", inst.instance_id, task.exception())

        task = asyncio.ensure_future(self.on_oversized(inst, size))
        self._failing.add(task)  # the loop holds tasks weakly
        task.add_done_callback(settled)

    # -- sending ---------------------------------------------------------------------------------

    def _token(self) -> str:
        return f"{self._boot}-{next(self._tokens)}"

    def check_token(self, token: str) -> None:
        """Tokens are ``<boot id>-<n>``; one from an earlier run is stale, not malformed."""
        prefix, _, number = token.rpartition("-")
        if token and (not prefix or not number.isdigit()):
            raise InvalidArgument(f"malformed completion token {token!r}")

    def _send_turn(self, inst: Instance, stream: WorkStream) -> None:
        started = orch.new_event(now_ns(), workflowStarted=pb.WorkflowStartedEvent())
        dispatched = list(inst.inbox)
        request = pb.WorkflowRequest(
            instanceId=inst.instance_id, executionId=string_value(inst.execution_id)
        )
        cached = stream.warm.get(inst.instance_id, 0)
        if stream.stateful and 0 < cached <= len(inst.history):
            request.cachedHistory.eventCount = cached
            request.pastEvents.extend(inst.history[cached:])
        else:
            request.pastEvents.extend(inst.history)
        request.newEvents.append(started)
        request.newEvents.extend(e for _, e in dispatched)
        token = self._token()
        self._turns[inst.instance_id] = Turn(token, stream, started, dispatched, len(inst.history))
        stream.turns.add(inst.instance_id)
        stream.queue.put_nowait(pb.WorkItem(workflowRequest=request, completionToken=token))

    def _send_activity(self, inst: Instance, task_id: int, stream: WorkStream) -> None:
        token = self._token()
        self._flights[token] = ActivityFlight(
            inst.instance_id, inst.execution_id, task_id, stream, now_ns()
        )
        self._flight_tokens[(inst.instance_id, inst.execution_id, task_id)] = token
        stream.activities.add(token)
        stream.queue.put_nowait(
            pb.WorkItem(activityRequest=inst.activities[task_id], completionToken=token)
        )

    # -- completions -----------------------------------------------------------------------------

    def land_activity(self, response: pb.ActivityResponse) -> ActivityFlight | None:
        """The flight an activity response answers, now finished; None if stale or unknown."""
        self.check_token(response.completionToken)
        token = response.completionToken
        if not token:  # older workers send none: the flight of the current generation
            inst = self.instances.get(response.instanceId)
            key = (response.instanceId, inst.execution_id if inst else "", response.taskId)
            token = self._flight_tokens.get(key, "")
        flight = self._flights.get(token)
        if flight is None:
            return None
        if flight.instance_id != response.instanceId or flight.task_id != response.taskId:
            raise InvalidArgument(
                f"completion token {token!r} belongs to activity {flight.task_id} of "
                f"'{flight.instance_id}', not {response.taskId} of '{response.instanceId}'"
            )
        del self._flights[token]
        self._flight_tokens.pop((flight.instance_id, flight.execution_id, flight.task_id), None)
        flight.stream.activities.discard(token)
        self.schedule_pump()
        return flight

    def land_turn(self, inst: Instance, turn: Turn, *, keep_warm: bool) -> None:
        """A turn's answer was accepted: free its stream slot and note what the worker caches."""
        self._turns.pop(inst.instance_id, None)
        stream = turn.stream
        stream.turns.discard(inst.instance_id)
        self.forget(inst.instance_id)  # only the stream that ran this turn caches it now
        if keep_warm and stream.stateful:
            stream.warm[inst.instance_id] = turn.past_count
        self.schedule_pump()

    def forget(self, instance_id: str) -> None:
        """No worker holds this instance's history any more (it ended or started anew)."""
        for stream in self.streams:
            stream.warm.pop(instance_id, None)
