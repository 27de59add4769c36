"""The workflow engine: runtime state of active instances, dispatch, timers and waiters.

Everything here runs on the sidecar's one asyncio event loop, so in-memory state needs no
locks. Durability follows one rule: memory is changed first (synchronously, so concurrent RPCs
see a consistent picture), the matching rows are queued on the store's single writer, and an
RPC that changed state answers only after that write committed. New work may be dispatched
before the commit because the writer is FIFO: whatever a worker reports back about that work is
committed in a later transaction than the state it depends on, so a crash can lose both, never
one without the other (and activities are at-least-once anyway).

Only active (non-terminal) instances live in memory; a terminal instance is evicted once its
final state has committed, and reads of it go to SQLite.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dapr.ext.workflow._durabletask.internal import protos as pb

from . import orchestration as orch
from .api import (
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    STALLED,
    SUSPENDED,
    TERMINAL_STATUSES,
    TERMINATED,
    InstanceInfo,
)
from .errors import (
    AlreadyExists,
    InstanceNotFound,
    InvalidArgument,
    NotCompleted,
    NotFound,
    Stalled,
)
from .store import Store

log = logging.getLogger("sidecar.engine")

MAX_ID_LENGTH = 1024
MAX_TIMER_SLEEP = 3600.0
STATEFUL_HISTORY = pb.WORKER_CAPABILITY_STATEFUL_HISTORY

Statement = tuple[str, list[tuple[Any, ...]]]


def _now_ns() -> int:
    return time.time_ns()


def _ts(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


@dataclass
class Turn:
    """A workflow work item in flight: what was sent and to whom."""

    token: str
    stream: WorkStream
    started: pb.HistoryEvent
    dispatched: list[tuple[int, pb.HistoryEvent]]
    past_count: int


@dataclass
class Instance:
    """Runtime state of one active instance (terminal ones are not kept in memory)."""

    instance_id: str
    name: str
    execution_id: str
    status: int
    created_ns: int
    updated_ns: int
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: pb.TaskFailureDetails | None = None
    parent: pb.ParentInstanceInfo | None = None
    scheduled_start_ns: int | None = None
    stalled: pb.ExecutionStalledEvent | None = None
    suspended: bool = False
    version: str | None = None
    history: list[pb.HistoryEvent] = field(default_factory=list)
    inbox: list[tuple[int, pb.HistoryEvent]] = field(default_factory=list)
    activities: dict[int, pb.ActivityRequest] = field(default_factory=dict)
    timers: dict[int, int] = field(default_factory=dict)
    turn: Turn | None = None
    queued: bool = False
    done: bool = False

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def info(self) -> InstanceInfo:
        return InstanceInfo(
            instance_id=self.instance_id,
            name=self.name,
            status=self.status,
            created_at=_ts(self.created_ns),
            updated_at=_ts(self.updated_ns),
            input=self.input,
            output=self.output,
            custom_status=self.custom_status,
            failure=self.failure,
            parent_instance_id=(
                self.parent.workflowInstance.instanceId if self.parent is not None else None
            ),
            version=self.version,
        )

    def row(self) -> tuple[Any, ...]:
        return (
            self.instance_id,
            self.name,
            self.execution_id,
            self.status,
            self.created_ns / 1e9,
            self.updated_ns / 1e9,
            self.input,
            self.output,
            self.custom_status,
            self.failure.SerializeToString() if self.failure is not None else None,
            self.parent.SerializeToString() if self.parent is not None else None,
            self.scheduled_start_ns / 1e9 if self.scheduled_start_ns is not None else None,
            self.stalled.SerializeToString() if self.stalled is not None else None,
            int(self.suspended),
            self.version,
        )


UPSERT_INSTANCE = (
    "INSERT OR REPLACE INTO instances (instance_id, name, execution_id, status, created_at,"
    " updated_at, input, output, custom_status, failure, parent, scheduled_start, stalled,"
    " suspended, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_HISTORY = "INSERT INTO history (instance_id, seq, event) VALUES (?,?,?)"
INSERT_INBOX = "INSERT INTO inbox (id, instance_id, event) VALUES (?,?,?)"
DELETE_INBOX_ROW = "DELETE FROM inbox WHERE id = ?"
INSERT_ACTIVITY = (
    "INSERT OR REPLACE INTO activities (instance_id, execution_id, task_id, request)"
    " VALUES (?,?,?,?)"
)
DELETE_ACTIVITY = "DELETE FROM activities WHERE instance_id = ? AND task_id = ?"
INSERT_TIMER = (
    "INSERT OR REPLACE INTO timers (instance_id, execution_id, timer_id, fire_at, event)"
    " VALUES (?,?,?,?,?)"
)
DELETE_TIMER = "DELETE FROM timers WHERE instance_id = ? AND timer_id = ?"
PURGE_TABLES = ("history", "inbox", "activities", "timers", "instances")


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
class _ActivityFlight:
    instance_id: str
    execution_id: str
    task_id: int
    stream: WorkStream


class Engine:
    """See the module docstring. All public coroutines run on the sidecar loop."""

    def __init__(self, store: Store, *, max_outstanding_per_stream: int = 2000) -> None:
        self.store = store
        self.max_outstanding = max_outstanding_per_stream
        self._instances: dict[str, Instance] = {}
        self._ready: deque[str] = deque()
        self._activity_queue: deque[tuple[str, str, int]] = deque()
        self._activity_flights: dict[str, _ActivityFlight] = {}
        self._activity_tokens: dict[tuple[str, int], str] = {}
        self._streams: list[WorkStream] = []
        self._boot = uuid.uuid4().hex[:12]
        self._tokens = itertools.count(1)
        self._timer_heap: list[tuple[int, int, str, str, int]] = []
        self._timer_seq = itertools.count()
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_due_ns: int | None = None
        self._waiters: dict[
            str, list[tuple[Callable[[InstanceInfo], bool], asyncio.Future[InstanceInfo]]]
        ] = {}
        self._pump_scheduled = False
        self._next_inbox_id = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    # -- start-up and shutdown -------------------------------------------------------------------

    def recover(self) -> None:
        """Load every active instance and its pending work from the database (start-up)."""
        self._loop = asyncio.get_running_loop()

        def load(conn: Any) -> tuple[list[Any], ...]:
            rows = conn.execute(
                "SELECT instance_id, name, execution_id, status, created_at, updated_at, input,"
                " output, custom_status, failure, parent, scheduled_start, stalled, suspended,"
                " version FROM instances WHERE status NOT IN (1, 3, 5)"
            ).fetchall()
            history = conn.execute(
                "SELECT h.instance_id, h.event FROM history h JOIN instances i"
                " ON i.instance_id = h.instance_id WHERE i.status NOT IN (1, 3, 5)"
                " ORDER BY h.instance_id, h.seq"
            ).fetchall()
            inbox = conn.execute("SELECT id, instance_id, event FROM inbox ORDER BY id").fetchall()
            activities = conn.execute(
                "SELECT instance_id, execution_id, task_id, request FROM activities"
            ).fetchall()
            timers = conn.execute(
                "SELECT instance_id, execution_id, timer_id, fire_at FROM timers"
            ).fetchall()
            return rows, history, inbox, activities, timers

        rows, history, inbox, activities, timers = self.store.read(load)
        for r in rows:
            inst = Instance(
                instance_id=r[0],
                name=r[1],
                execution_id=r[2],
                status=r[3],
                created_ns=int(r[4] * 1e9),
                updated_ns=int(r[5] * 1e9),
                input=r[6],
                output=r[7],
                custom_status=r[8],
                failure=_parse(pb.TaskFailureDetails, r[9]),
                parent=_parse(pb.ParentInstanceInfo, r[10]),
                scheduled_start_ns=int(r[11] * 1e9) if r[11] is not None else None,
                suspended=bool(r[13]),
                version=r[14],
            )
            # A stalled instance gets another chance after a restart, as on daprd.
            self._instances[inst.instance_id] = inst
        for iid, blob in history:
            self._instances[iid].history.append(_parse_event(blob))
        max_inbox = 0
        for rid, iid, blob in inbox:
            max_inbox = max(max_inbox, rid)
            if iid in self._instances:
                self._instances[iid].inbox.append((rid, _parse_event(blob)))
        self._next_inbox_id = max_inbox + 1
        for iid, exec_id, task_id, blob in activities:
            inst = self._instances.get(iid)
            if inst is not None and inst.execution_id == exec_id:
                inst.activities[task_id] = _parse(pb.ActivityRequest, blob)  # type: ignore[assignment]
                self._activity_queue.append((iid, exec_id, task_id))
        for iid, exec_id, timer_id, fire_at in timers:
            inst = self._instances.get(iid)
            if inst is not None and inst.execution_id == exec_id:
                fire_ns = int(fire_at * 1e9)
                inst.timers[timer_id] = fire_ns
                self._push_timer(fire_ns, iid, exec_id, timer_id)
        for inst in self._instances.values():
            if inst.scheduled_start_ns is not None:
                self._push_timer(inst.scheduled_start_ns, inst.instance_id, inst.execution_id, -1)
            self._make_ready(inst)
        if self._instances:
            log.info(
                "recovered %d active workflow instance(s), %d pending activities, %d timers",
                len(self._instances),
                len(activities),
                len(timers),
            )
        self._arm_timers()

    def close(self) -> None:
        """Stop dispatching; end every work stream (workers reconnect to the next sidecar)."""
        self._closing = True
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        for stream in list(self._streams):
            stream.queue.put_nowait(None)
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.cancel()

    # -- persistence helper ----------------------------------------------------------------------

    def _write(self, statements: list[Statement]) -> asyncio.Future[Any]:
        def op(conn: Any) -> None:
            for sql, params in statements:
                if len(params) == 1:
                    conn.execute(sql, params[0])
                else:
                    conn.executemany(sql, params)

        return self.store.write(op)

    def _new_inbox_row(self, inst: Instance, event: pb.HistoryEvent) -> Statement:
        rid = self._next_inbox_id
        self._next_inbox_id += 1
        inst.inbox.append((rid, event))
        return (INSERT_INBOX, [(rid, inst.instance_id, event.SerializeToString())])

    # -- reads -----------------------------------------------------------------------------------

    def get_instance(self, instance_id: str) -> InstanceInfo | None:
        inst = self._instances.get(instance_id)
        if inst is not None:
            return inst.info()
        row = self.store.read(
            lambda c: c.execute(
                "SELECT instance_id, name, status, created_at, updated_at, input, output,"
                " custom_status, failure, parent, version FROM instances WHERE instance_id = ?",
                (instance_id,),
            ).fetchone()
        )
        if row is None:
            return None
        parent = _parse(pb.ParentInstanceInfo, row[9])
        return InstanceInfo(
            instance_id=row[0],
            name=row[1],
            status=row[2],
            created_at=datetime.fromtimestamp(row[3], tz=UTC),
            updated_at=datetime.fromtimestamp(row[4], tz=UTC),
            input=row[5],
            output=row[6],
            custom_status=row[7],
            failure=_parse(pb.TaskFailureDetails, row[8]),  # type: ignore[arg-type]
            parent_instance_id=parent.workflowInstance.instanceId if parent else None,  # type: ignore[attr-defined]
            version=row[10],
        )

    def get_history(self, instance_id: str) -> list[pb.HistoryEvent]:
        """Committed history of the current generation. Raises ``NotFound``."""
        check_instance_id(instance_id)
        inst = self._instances.get(instance_id)
        if inst is not None:
            return list(inst.history)
        events = self._stored_history(instance_id)
        if events is None:
            raise NotFound(f"workflow instance '{instance_id}' not found")
        return events

    def _stored_history(self, instance_id: str) -> list[pb.HistoryEvent] | None:
        def load(conn: Any) -> tuple[bool, list[bytes]]:
            exists = conn.execute(
                "SELECT 1 FROM instances WHERE instance_id = ?", (instance_id,)
            ).fetchone()
            rows = conn.execute(
                "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)
            ).fetchall()
            return exists is not None, [r[0] for r in rows]

        exists, blobs = self.store.read(load)
        if not exists:
            return None
        return [_parse_event(b) for b in blobs]

    def list_instance_ids(
        self, *, page_size: int | None = None, continuation_token: str | None = None
    ) -> tuple[list[str], str | None]:
        after = continuation_token or ""
        limit = page_size if page_size else -1
        ids = self.store.read(
            lambda c: [
                r[0]
                for r in c.execute(
                    "SELECT instance_id FROM instances WHERE instance_id > ?"
                    " ORDER BY instance_id LIMIT ?",
                    (after, limit + 1 if limit > 0 else -1),
                )
            ]
        )
        if limit > 0 and len(ids) > limit:
            return ids[:limit], ids[limit - 1]
        return ids, None

    async def wait_for_instance(
        self, instance_id: str, *, until: str = "completion"
    ) -> InstanceInfo:
        """Park until the instance has started (``until="start"``) or is terminal.

        A missing instance parks until it is created, as daprd does; the caller's deadline
        ends the wait.
        """
        check_instance_id(instance_id)
        if until == "start":
            return await self._wait(instance_id, lambda i: i.status != PENDING)
        return await self._wait(instance_id, lambda i: i.is_terminal)

    async def _wait(
        self, instance_id: str, predicate: Callable[[InstanceInfo], bool]
    ) -> InstanceInfo:
        info = self.get_instance(instance_id)
        if info is not None and predicate(info):
            return info
        fut: asyncio.Future[InstanceInfo] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(instance_id, []).append((predicate, fut))
        try:
            return await fut
        finally:
            waiters = self._waiters.get(instance_id)
            if waiters is not None:
                waiters[:] = [w for w in waiters if w[1] is not fut]
                if not waiters:
                    del self._waiters[instance_id]

    def _notify(self, instance_id: str) -> None:
        waiters = self._waiters.get(instance_id)
        if not waiters:
            return
        info = self.get_instance(instance_id)
        if info is None:
            return
        for predicate, fut in waiters:
            if not fut.done() and predicate(info):
                fut.set_result(info)

    # -- client operations -----------------------------------------------------------------------

    async def start_instance(
        self,
        *,
        instance_id: str,
        name: str,
        input: str | None = None,
        scheduled_start: datetime | None = None,
        version: str | None = None,
        wait_for_start: bool = True,
    ) -> str:
        check_instance_id(instance_id)
        if not name:
            raise InvalidArgument("a workflow name is required")
        existing = self._instances.get(instance_id)
        if existing is not None and not existing.done:
            raise AlreadyExists(f"an active workflow with ID '{instance_id}' already exists")
        now = _now_ns()
        execution_id = orch.new_execution_id()
        started = pb.ExecutionStartedEvent(
            name=name,
            input=_sv(input),
            version=_sv(version) if version else None,
            workflowInstance=pb.WorkflowInstance(
                instanceId=instance_id, executionId=_sv(execution_id)
            ),
        )
        scheduled_ns = None
        if scheduled_start is not None:
            scheduled_ns = int(scheduled_start.timestamp() * 1e9)
            started.scheduledStartTimestamp.FromNanoseconds(scheduled_ns)
            if scheduled_ns <= now:
                scheduled_ns = None
        inst = Instance(
            instance_id=instance_id,
            name=name,
            execution_id=execution_id,
            status=PENDING,
            created_ns=now,
            updated_ns=now,
            input=input,
            scheduled_start_ns=scheduled_ns,
        )
        self._instances[instance_id] = inst
        statements = self._purge_statements([instance_id])  # a terminal ID is reused: wipe it
        statements.append(self._new_inbox_row(inst, orch.new_event(now, executionStarted=started)))
        statements.append((UPSERT_INSTANCE, [inst.row()]))
        commit = self._write(statements)
        if scheduled_ns is not None:
            self._push_timer(scheduled_ns, instance_id, execution_id, -1)
            self._arm_timers()
        else:
            self._make_ready(inst)
        await commit
        self._notify(instance_id)
        if wait_for_start and scheduled_ns is None:
            await self.wait_for_instance(instance_id, until="start")
        return instance_id

    async def raise_event(self, instance_id: str, name: str, input: str | None = None) -> None:
        check_instance_id(instance_id)
        if not name:
            raise InvalidArgument("an event name is required")
        inst = self._active_or_raise(instance_id)
        if inst is None:
            return  # terminal: accepted and dropped, as daprd does
        if inst.status == STALLED:
            raise Stalled(f"workflow '{instance_id}' is stalled")
        event = orch.new_event(
            _now_ns(), eventRaised=pb.EventRaisedEvent(name=name, input=_sv(input))
        )
        commit = self._write([self._new_inbox_row(inst, event)])
        self._make_ready(inst)
        await commit

    async def suspend(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        check_instance_id(instance_id)
        inst = self._active_or_raise(instance_id)
        if inst is None:
            return
        event = orch.new_event(
            _now_ns(), executionSuspended=pb.ExecutionSuspendedEvent(input=_sv(reason or None))
        )
        commit = self._write([self._new_inbox_row(inst, event)])
        self._make_ready(inst)
        await commit
        if wait:
            await self._wait(instance_id, lambda i: i.status == SUSPENDED or i.is_terminal)

    async def resume(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        """Resume a suspended instance. Resuming one that is not suspended (and has no suspend
        on its way) does nothing: the SDK would fail the workflow on an unexpected
        executionResumed event (protocol sheet §1.7), which nobody asking to resume wants."""
        check_instance_id(instance_id)
        inst = self._active_or_raise(instance_id)
        if inst is None or not self._will_be_suspended(inst):
            return
        event = orch.new_event(
            _now_ns(), executionResumed=pb.ExecutionResumedEvent(input=_sv(reason or None))
        )
        commit = self._write([self._new_inbox_row(inst, event)])
        self._make_ready(inst)
        await commit
        if wait:
            await self._wait(instance_id, lambda i: i.status != SUSPENDED)

    @staticmethod
    def _will_be_suspended(inst: Instance) -> bool:
        suspended = inst.suspended
        for _, event in inst.inbox:
            kind = event.WhichOneof("eventType")
            if kind == "executionSuspended":
                suspended = True
            elif kind == "executionResumed":
                suspended = False
        return suspended

    async def terminate(
        self,
        instance_id: str,
        *,
        output: str | None = None,
        recursive: bool = True,
        wait: bool = True,
    ) -> None:
        check_instance_id(instance_id)
        inst = self._active_or_raise(instance_id, "failed to submit termination request: ")
        if inst is None:
            return
        await self._terminate(inst, output, recursive)
        if wait:
            await self.wait_for_instance(instance_id, until="completion")

    async def _terminate(self, inst: Instance, output: str | None, recursive: bool) -> None:
        now = _now_ns()
        terminated = orch.new_event(
            now,
            executionTerminated=pb.ExecutionTerminatedEvent(input=_sv(output), recurse=recursive),
        )
        if inst.turn is not None:
            # A worker is busy with this instance: the termination goes in the next turn.
            commit = self._write([self._new_inbox_row(inst, terminated)])
            await commit
            return
        # Nothing in flight: terminate here, without a worker round trip. The SDK would only
        # answer completeWorkflow(TERMINATED, output), so the outcome is the same.
        events = [orch.new_event(now, workflowStarted=pb.WorkflowStartedEvent())]
        if not inst.history and inst.inbox:
            first = inst.inbox[0][1]
            if first.WhichOneof("eventType") == "executionStarted":
                events.append(first)
        events.append(terminated)
        events.append(
            orch.new_event(
                now,
                executionCompleted=pb.ExecutionCompletedEvent(
                    workflowStatus=TERMINATED, result=_sv(output)
                ),
            )
        )
        outcome = orch.TurnOutcome(
            events=events,
            status=TERMINATED,
            custom_status=inst.custom_status,
            output=output,
            terminate_recursively=recursive,
        )
        await self._commit_outcome(inst, outcome, consumed=[])

    async def purge(self, instance_id: str, *, recursive: bool = True) -> int:
        check_instance_id(instance_id)
        order: list[str] = []
        self._collect_purge(instance_id, recursive, order, root=True)
        await self._write(self._purge_statements(order))
        return len(order)

    def _collect_purge(
        self, instance_id: str, recursive: bool, order: list[str], root: bool
    ) -> None:
        inst = self._instances.get(instance_id)
        if inst is not None:
            if inst.status == STALLED:
                raise Stalled(f"workflow '{instance_id}' is stalled")
            raise NotCompleted(
                f"failed to purge workflow state: orchestration has not yet completed: "
                f"'{instance_id}'"
            )
        history = self._stored_history(instance_id)
        if history is None:
            if root:
                raise InstanceNotFound(instance_id, "failed to purge workflow state: ")
            return
        if recursive:
            for child in orch.children_of(history):
                if child not in order:
                    self._collect_purge(child, recursive, order, root=False)
        order.append(instance_id)

    @staticmethod
    def _purge_statements(instance_ids: list[str]) -> list[Statement]:
        params = [(iid,) for iid in instance_ids]
        return [(f"DELETE FROM {t} WHERE instance_id = ?", params) for t in PURGE_TABLES]

    async def rerun_from_event(
        self,
        source_id: str,
        event_id: int,
        *,
        new_instance_id: str | None = None,
        input: str | None = None,
        overwrite_input: bool = False,
        new_child_instance_id: str | None = None,
    ) -> str:
        """Start a new instance from a terminal one's history up to ``event_id`` (daprd's rerun).

        The new history keeps everything before the target event; the target and every
        activity, timer or child scheduled before it and never resolved run again.
        """
        if not source_id:
            raise InvalidArgument("source instance id is required")
        new_id = new_instance_id or uuid.uuid4().hex
        check_instance_id(new_id)
        if new_id == source_id:
            raise InvalidArgument("the new instance id must differ from the source instance id")
        source = self.get_instance(source_id)
        if source is None:
            raise NotFound(f"workflow instance does not exist with ID '{source_id}'")
        if not source.is_terminal:
            raise InvalidArgument(f"'{source_id}' is not in a terminal state")
        if source.parent_instance_id:
            raise InvalidArgument(f"'{source_id}': cannot rerun from child-workflows")
        history = self.get_history(source_id)
        index = next(
            (i for i, e in enumerate(history) if e.eventId == event_id and event_id >= 0), None
        )
        if index is None:
            raise NotFound(f"'{source_id}' does not have history event with ID '{event_id}'")
        target = pb.HistoryEvent()
        target.CopyFrom(history[index])
        kind = target.WhichOneof("eventType")
        if kind not in ("taskScheduled", "timerCreated", "childWorkflowInstanceCreated"):
            raise NotFound(
                f"target event '{kind}' with ID '{event_id}' is not an event that can be rerun"
            )
        if overwrite_input and kind == "timerCreated":
            raise InvalidArgument("cannot overwrite the input of a timer event")
        if new_child_instance_id is not None and kind != "childWorkflowInstanceCreated":
            raise InvalidArgument("a new child instance id needs a child workflow target event")
        if new_id in self._instances or self.get_instance(new_id) is not None:
            raise AlreadyExists(f"workflow '{new_id}' has already been created")
        rerun_of = pb.RerunParentInstanceInfo(instanceID=source_id)
        getattr(target, kind).rerunParentInstanceInfo.CopyFrom(rerun_of)
        if overwrite_input:
            getattr(target, kind).input.CopyFrom(_sv(input) or pb.wrappers_pb2.StringValue())
            if input is None:
                getattr(target, kind).ClearField("input")
        if kind == "childWorkflowInstanceCreated":
            target.childWorkflowInstanceCreated.instanceId = (
                new_child_instance_id or f"{new_id}:{event_id:04x}"
            )
        events = [*history[:index], target]
        return await self._start_rerun(new_id, events)

    async def _start_rerun(self, new_id: str, events: list[pb.HistoryEvent]) -> str:
        now = _now_ns()
        execution_id = orch.new_execution_id()
        resolved: set[int] = set()
        for event in events:
            kind = event.WhichOneof("eventType")
            if kind == "executionStarted":
                event.executionStarted.workflowInstance.instanceId = new_id
                event.executionStarted.workflowInstance.executionId.value = execution_id
            elif kind in ("taskCompleted", "taskFailed"):
                resolved.add(getattr(event, kind).taskScheduledId)
            elif kind in ("childWorkflowInstanceCompleted", "childWorkflowInstanceFailed"):
                resolved.add(getattr(event, kind).taskScheduledId)
            elif kind == "timerFired":
                resolved.add(event.timerFired.timerId)
        started = next(e for e in events if e.WhichOneof("eventType") == "executionStarted")
        inst = Instance(
            instance_id=new_id,
            name=started.executionStarted.name,
            execution_id=execution_id,
            status=RUNNING,
            created_ns=now,
            updated_ns=now,
            input=started.executionStarted.input.value
            if started.executionStarted.HasField("input")
            else None,
            history=events,
        )
        self._instances[new_id] = inst
        statements: list[Statement] = [
            (INSERT_HISTORY, [(new_id, i, e.SerializeToString()) for i, e in enumerate(events)])
        ]
        for event in events:
            kind = event.WhichOneof("eventType")
            if event.eventId in resolved:
                continue
            if kind == "taskScheduled":
                task = event.taskScheduled
                request = pb.ActivityRequest(
                    name=task.name,
                    version=task.version if task.HasField("version") else None,
                    input=task.input if task.HasField("input") else None,
                    workflowInstance=pb.WorkflowInstance(
                        instanceId=new_id, executionId=_sv(execution_id)
                    ),
                    taskId=event.eventId,
                    taskExecutionId=task.taskExecutionId,
                )
                inst.activities[event.eventId] = request
                self._activity_queue.append((new_id, execution_id, event.eventId))
                statements.append(
                    (
                        INSERT_ACTIVITY,
                        [(new_id, execution_id, event.eventId, request.SerializeToString())],
                    )
                )
            elif kind == "timerCreated":
                fired = orch.new_event(
                    now,
                    timerFired=pb.TimerFiredEvent(
                        fireAt=event.timerCreated.fireAt, timerId=event.eventId
                    ),
                )
                statements.append(self._new_inbox_row(inst, fired))
            elif kind == "childWorkflowInstanceCreated":
                child = event.childWorkflowInstanceCreated
                if not child.instanceId.startswith(new_id):
                    child.instanceId = f"{new_id}:{event.eventId:04x}"
                    statements[0] = (
                        INSERT_HISTORY,
                        [(new_id, i, e.SerializeToString()) for i, e in enumerate(events)],
                    )
                view = orch.InstanceView(new_id, execution_id, inst.name, events, False)
                action = pb.WorkflowAction(
                    id=event.eventId,
                    createChildWorkflow=pb.CreateChildWorkflowAction(
                        instanceId=child.instanceId,
                        name=child.name,
                        input=child.input if child.HasField("input") else None,
                    ),
                )
                outcome = orch.TurnOutcome(events=[], status=RUNNING, custom_status=None)
                orch.create_child(view, action, now, outcome)
                for start in outcome.children:
                    statements.extend(self._start_child(inst, start, now))
        statements.append((UPSERT_INSTANCE, [inst.row()]))
        commit = self._write(statements)
        self._make_ready(inst)
        self._schedule_pump()
        await commit
        self._notify(new_id)
        return new_id

    def _active_or_raise(self, instance_id: str, prefix: str = "") -> Instance | None:
        """The active instance, or None when it is terminal; ``InstanceNotFound`` if unknown."""
        inst = self._instances.get(instance_id)
        if inst is not None:
            return None if inst.done else inst
        if self.get_instance(instance_id) is None:
            raise InstanceNotFound(instance_id, prefix)
        return None

    # -- work streams and dispatch ---------------------------------------------------------------

    def open_stream(self, capabilities: Iterable[int]) -> WorkStream:
        stream = WorkStream(capabilities)
        self._streams.append(stream)
        log.info("worker connected (stream %d); %d stream(s) open", stream.id, len(self._streams))
        self._schedule_pump()
        return stream

    def close_stream(self, stream: WorkStream) -> None:
        """The stream ended: everything sent on it and not completed is handed out again."""
        if stream.closed:
            return
        stream.closed = True
        self._streams.remove(stream)
        for iid in list(stream.turns):
            inst = self._instances.get(iid)
            if inst is not None and inst.turn is not None and inst.turn.stream is stream:
                inst.turn = None
                self._make_ready(inst)
        for token in list(stream.activities):
            flight = self._activity_flights.pop(token, None)
            if flight is not None:
                self._activity_tokens.pop((flight.instance_id, flight.task_id), None)
                self._activity_queue.appendleft(
                    (flight.instance_id, flight.execution_id, flight.task_id)
                )
        log.info(
            "worker disconnected (stream %d); %d turn(s) and %d activit(ies) re-queued",
            stream.id,
            len(stream.turns),
            len(stream.activities),
        )
        stream.turns.clear()
        stream.activities.clear()
        self._schedule_pump()

    def _make_ready(self, inst: Instance) -> None:
        if (
            inst.queued
            or inst.turn is not None
            or inst.done
            or not inst.inbox
            or inst.stalled is not None
            or inst.scheduled_start_ns is not None
        ):
            return
        inst.queued = True
        self._ready.append(inst.instance_id)
        self._schedule_pump()

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and not self._closing:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pick_stream(self, preferred: WorkStream | None = None) -> WorkStream | None:
        if (
            preferred is not None
            and not preferred.closed
            and (preferred.outstanding < self.max_outstanding)
        ):
            return preferred
        best = None
        for stream in self._streams:
            if stream.outstanding < self.max_outstanding and (
                best is None or stream.outstanding < best.outstanding
            ):
                best = stream
        return best

    def _pump(self) -> None:
        """Hand queued turns and activities to the least busy streams."""
        self._pump_scheduled = False
        while self._ready and self._streams:
            iid = self._ready[0]
            inst = self._instances.get(iid)
            if inst is None or not inst.queued:
                self._ready.popleft()
                continue
            inst.queued = False
            if inst.turn is not None or inst.done or not inst.inbox or inst.stalled is not None:
                self._ready.popleft()
                continue
            stream = self._pick_stream(self._warm_stream(iid))
            if stream is None:
                inst.queued = True
                break
            self._ready.popleft()
            self._send_turn(inst, stream)
        while self._activity_queue and self._streams:
            iid, exec_id, task_id = self._activity_queue[0]
            inst = self._instances.get(iid)
            if (
                inst is None
                or inst.done
                or inst.execution_id != exec_id
                or task_id not in inst.activities
                or (iid, task_id) in self._activity_tokens
            ):
                self._activity_queue.popleft()
                continue
            stream = self._pick_stream()
            if stream is None:
                break
            self._activity_queue.popleft()
            self._send_activity(inst, task_id, stream)

    def _warm_stream(self, instance_id: str) -> WorkStream | None:
        for stream in self._streams:
            if instance_id in stream.warm:
                return stream
        return None

    def _token(self) -> str:
        return f"{self._boot}-{next(self._tokens)}"

    def _send_turn(self, inst: Instance, stream: WorkStream) -> None:
        now = _now_ns()
        started = orch.new_event(now, workflowStarted=pb.WorkflowStartedEvent())
        dispatched = list(inst.inbox)
        request = pb.WorkflowRequest(
            instanceId=inst.instance_id, executionId=_sv(inst.execution_id)
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
        inst.turn = Turn(token, stream, started, dispatched, len(inst.history))
        stream.turns.add(inst.instance_id)
        stream.queue.put_nowait(pb.WorkItem(workflowRequest=request, completionToken=token))

    def _send_activity(self, inst: Instance, task_id: int, stream: WorkStream) -> None:
        token = self._token()
        self._activity_flights[token] = _ActivityFlight(
            inst.instance_id, inst.execution_id, task_id, stream
        )
        self._activity_tokens[(inst.instance_id, task_id)] = token
        stream.activities.add(token)
        stream.queue.put_nowait(
            pb.WorkItem(activityRequest=inst.activities[task_id], completionToken=token)
        )

    def _check_token(self, token: str) -> None:
        if token and not token.startswith(self._boot + "-"):
            prefix, _, number = token.rpartition("-")
            if not prefix or not number.isdigit():
                raise InvalidArgument(f"malformed completion token {token!r}")

    # -- completions -----------------------------------------------------------------------------

    async def complete_activity(self, response: pb.ActivityResponse) -> None:
        """Record an activity's result. A stale or duplicate result is ignored (daprd: OK)."""
        self._check_token(response.completionToken)
        token = response.completionToken or self._activity_tokens.get(
            (response.instanceId, response.taskId), ""
        )
        flight = self._activity_flights.get(token)
        if flight is None:
            return
        if flight.instance_id != response.instanceId or flight.task_id != response.taskId:
            raise InvalidArgument(
                f"completion token {token!r} belongs to activity {flight.task_id} of "
                f"'{flight.instance_id}', not {response.taskId} of '{response.instanceId}'"
            )
        del self._activity_flights[token]
        self._activity_tokens.pop((flight.instance_id, flight.task_id), None)
        flight.stream.activities.discard(token)
        self._schedule_pump()
        inst = self._instances.get(flight.instance_id)
        if inst is None or inst.done or inst.execution_id != flight.execution_id:
            return
        request = inst.activities.pop(flight.task_id, None)
        if request is None:
            return
        event = orch.activity_result_event(request, response, _now_ns())
        commit = self._write(
            [
                (DELETE_ACTIVITY, [(inst.instance_id, flight.task_id)]),
                self._new_inbox_row(inst, event),
            ]
        )
        self._make_ready(inst)
        await commit

    async def complete_turn(self, response: pb.WorkflowResponse) -> None:
        """Apply a worker's answer to a dispatched turn (CompleteOrchestratorTask)."""
        self._check_token(response.completionToken)
        inst = self._instances.get(response.instanceId)
        if inst is None or inst.turn is None:
            return  # nothing in flight: a late or duplicate answer (daprd ignores it)
        turn = inst.turn
        if response.completionToken and response.completionToken != turn.token:
            return  # an answer to an earlier dispatch of this instance
        view = orch.InstanceView(
            inst.instance_id, inst.execution_id, inst.name, inst.history, inst.suspended
        )
        now = _now_ns()
        outcome = orch.apply_turn(
            view, turn.started, [e for _, e in turn.dispatched], response, now
        )
        inst.turn = None
        stream = turn.stream
        stream.turns.discard(inst.instance_id)
        if outcome.continued_as_new is not None or outcome.is_terminal or outcome.stall:
            stream.warm.pop(inst.instance_id, None)
        elif stream.stateful:
            stream.warm[inst.instance_id] = turn.past_count
        self._schedule_pump()
        consumed = [rid for rid, _ in turn.dispatched]
        if outcome.stall is not None:
            await self._commit_stall(inst, outcome.stall)
        elif outcome.continued_as_new is not None:
            await self._commit_continue_as_new(inst, outcome.continued_as_new, consumed, now)
        else:
            await self._commit_outcome(inst, outcome, consumed)

    async def _commit_stall(self, inst: Instance, stall: pb.ExecutionStalledEvent) -> None:
        log.warning("workflow %s stalled: %s", inst.instance_id, stall.description)
        inst.stalled = stall
        inst.status = STALLED
        inst.updated_ns = _now_ns()
        await self._write([(UPSERT_INSTANCE, [inst.row()])])
        self._notify(inst.instance_id)

    async def _commit_continue_as_new(
        self, inst: Instance, done: pb.CompleteWorkflowAction, consumed: list[int], now: int
    ) -> None:
        view = orch.InstanceView(
            inst.instance_id, inst.execution_id, inst.name, inst.history, inst.suspended
        )
        execution_id, first = orch.continue_as_new_events(view, inst.parent, done, now)
        remaining = inst.inbox[len(consumed) :]
        iid = inst.instance_id
        statements: list[Statement] = [
            (f"DELETE FROM {t} WHERE instance_id = ?", [(iid,)])
            for t in ("history", "inbox", "activities", "timers")
        ]
        inst.execution_id = execution_id
        inst.history = []
        inst.inbox = []
        inst.activities.clear()
        inst.timers.clear()
        inst.status = RUNNING
        inst.suspended = False
        inst.created_ns = inst.updated_ns = now
        started = first[0].executionStarted
        inst.input = started.input.value if started.HasField("input") else None
        inst.custom_status = None
        for event in [*first, *(e for _, e in remaining)]:
            statements.append(self._new_inbox_row(inst, event))
        statements.append((UPSERT_INSTANCE, [inst.row()]))
        commit = self._write(statements)
        self._make_ready(inst)
        await commit

    async def _commit_outcome(
        self, inst: Instance, outcome: orch.TurnOutcome, consumed: list[int]
    ) -> None:
        iid = inst.instance_id
        now = _now_ns()
        first_seq = len(inst.history)
        inst.history.extend(outcome.events)
        inst.inbox = inst.inbox[len(consumed) :]
        inst.updated_ns = now
        inst.custom_status = outcome.custom_status
        inst.stalled = None
        if outcome.version is not None and outcome.version.name and inst.version is None:
            inst.version = outcome.version.name
        for event in outcome.events:
            kind = event.WhichOneof("eventType")
            if kind == "executionSuspended":
                inst.suspended = True
            elif kind == "executionResumed":
                inst.suspended = False
        inst.status = outcome.status
        statements: list[Statement] = [
            (
                INSERT_HISTORY,
                [(iid, first_seq + i, e.SerializeToString()) for i, e in enumerate(outcome.events)],
            )
        ]
        if consumed:
            statements.append((DELETE_INBOX_ROW, [(rid,) for rid in consumed]))
        if outcome.is_terminal:
            inst.output = outcome.output
            inst.failure = outcome.failure
            inst.done = True
            statements.extend(self._finish(inst, now))
        else:
            for request in outcome.activities:
                inst.activities[request.taskId] = request
                self._activity_queue.append((iid, inst.execution_id, request.taskId))
            if outcome.activities:
                statements.append(
                    (
                        INSERT_ACTIVITY,
                        [
                            (iid, inst.execution_id, r.taskId, r.SerializeToString())
                            for r in outcome.activities
                        ],
                    )
                )
            for fire_ns, fired in outcome.timers:
                timer_id = fired.timerFired.timerId
                inst.timers[timer_id] = fire_ns
                self._push_timer(fire_ns, iid, inst.execution_id, timer_id)
            if outcome.timers:
                statements.append(
                    (
                        INSERT_TIMER,
                        [
                            (iid, inst.execution_id, f.timerFired.timerId, ns / 1e9, b"")
                            for ns, f in outcome.timers
                        ],
                    )
                )
                self._arm_timers()
            for child in outcome.children:
                statements.extend(self._start_child(inst, child, now))
        statements.append((UPSERT_INSTANCE, [inst.row()]))
        commit = self._write(statements)
        self._make_ready(inst)
        await commit
        if inst.done:
            if self._instances.get(iid) is inst:
                del self._instances[iid]
            if outcome.terminate_recursively:
                await self._terminate_children(inst, outcome.output)
        self._notify(iid)

    def _finish(self, inst: Instance, now: int) -> list[Statement]:
        """A terminal turn: tell the parent, drop pending work, keep the record on disk."""
        iid = inst.instance_id
        statements: list[Statement] = [
            (f"DELETE FROM {t} WHERE instance_id = ?", [(iid,)])
            for t in ("inbox", "activities", "timers")
        ]
        inst.inbox.clear()
        inst.activities.clear()
        inst.timers.clear()
        parent = inst.parent
        if parent is not None:
            owner = self._instances.get(parent.workflowInstance.instanceId)
            if (
                owner is not None
                and not owner.done
                and owner.execution_id == parent.workflowInstance.executionId.value
            ):
                event = orch.child_result_event(parent, inst.status, inst.output, inst.failure, now)
                statements.append(self._new_inbox_row(owner, event))
                self._make_ready(owner)
        return statements

    async def _terminate_children(self, inst: Instance, output: str | None) -> None:
        for child_id in orch.children_of(inst.history):
            child = self._instances.get(child_id)
            if child is not None and not child.done:
                await self._terminate(child, output, recursive=True)

    def _start_child(self, parent: Instance, child: orch.ChildStart, now: int) -> list[Statement]:
        existing = self._instances.get(child.instance_id)
        if existing is not None and not existing.done:
            p = existing.parent
            if (
                p is not None
                and p.workflowInstance.instanceId == parent.instance_id
                and p.taskScheduledId == child.task_id
            ):
                return []  # the same child created again by a re-dispatched turn
            failure = pb.TaskFailureDetails(
                errorType="WorkflowInstanceAlreadyExists",
                errorMessage=f"an active workflow with ID '{child.instance_id}' already exists",
            )
            event = orch.new_event(
                now,
                childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                    taskScheduledId=child.task_id, failureDetails=failure
                ),
            )
            return [self._new_inbox_row(parent, event)]
        started = child.started.executionStarted
        inst = Instance(
            instance_id=child.instance_id,
            name=started.name,
            execution_id=started.workflowInstance.executionId.value,
            status=PENDING,
            created_ns=now,
            updated_ns=now,
            input=started.input.value if started.HasField("input") else None,
            parent=started.parentInstance,
        )
        self._instances[child.instance_id] = inst
        statements = self._purge_statements([child.instance_id])
        statements.append(self._new_inbox_row(inst, child.started))
        statements.append((UPSERT_INSTANCE, [inst.row()]))
        self._make_ready(inst)
        return statements

    # -- timers ----------------------------------------------------------------------------------

    def _push_timer(self, fire_ns: int, iid: str, execution_id: str, timer_id: int) -> None:
        heapq.heappush(
            self._timer_heap, (fire_ns, next(self._timer_seq), iid, execution_id, timer_id)
        )

    def _arm_timers(self) -> None:
        if not self._timer_heap or self._closing:
            return
        due = self._timer_heap[0][0]
        if (
            self._timer_handle is not None
            and self._timer_due_ns is not None
            and (self._timer_due_ns <= due)
        ):
            return
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        delay = min(max(0.0, (due - _now_ns()) / 1e9), MAX_TIMER_SLEEP)
        loop = self._loop or asyncio.get_running_loop()
        self._timer_due_ns = due
        self._timer_handle = loop.call_later(delay, self._fire_timers)

    def _fire_timers(self) -> None:
        self._timer_handle = None
        self._timer_due_ns = None
        now = _now_ns()
        statements: list[Statement] = []
        while self._timer_heap and self._timer_heap[0][0] <= now:
            fire_ns, _, iid, execution_id, timer_id = heapq.heappop(self._timer_heap)
            inst = self._instances.get(iid)
            if inst is None or inst.done or inst.execution_id != execution_id:
                continue
            if timer_id == -1:  # a scheduled start fell due
                if inst.scheduled_start_ns is not None:
                    inst.scheduled_start_ns = None
                    self._make_ready(inst)
                continue
            if inst.timers.pop(timer_id, None) is None:
                continue
            fire_at = pb.timestamp_pb2.Timestamp()
            fire_at.FromNanoseconds(fire_ns)
            event = orch.new_event(
                now, timerFired=pb.TimerFiredEvent(fireAt=fire_at, timerId=timer_id)
            )
            statements.append((DELETE_TIMER, [(iid, timer_id)]))
            statements.append(self._new_inbox_row(inst, event))
            self._make_ready(inst)
        if statements:
            self._write(statements)
        self._arm_timers()


def check_instance_id(instance_id: str) -> None:
    if not instance_id:
        raise InvalidArgument("an instance id is required")
    if len(instance_id) > MAX_ID_LENGTH:
        raise InvalidArgument(f"instance id is longer than {MAX_ID_LENGTH} characters")


def _sv(value: str | None) -> pb.wrappers_pb2.StringValue | None:
    return None if value is None else pb.wrappers_pb2.StringValue(value=value)


def _parse(cls: Any, blob: bytes | None) -> Any:
    if blob is None:
        return None
    message = cls()
    message.ParseFromString(blob)
    return message


def _parse_event(blob: bytes) -> pb.HistoryEvent:
    event = pb.HistoryEvent()
    event.ParseFromString(blob)
    return event


__all__ = ["Engine", "WorkStream", "COMPLETED", "FAILED", "TERMINATED"]
