"""The engine's state: active instances in memory, recovery, reads and waiters.

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
import logging
from collections.abc import Callable, Iterable
from typing import Any

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine.dispatch import Dispatcher, WorkStream
from sidecar.engine.instance import Instance, check_instance_id
from sidecar.engine.observers import EngineObserver
from sidecar.engine.status import PENDING, InstanceInfo
from sidecar.engine.timers import SCHEDULED_START, DurableTimers
from sidecar.errors import NotFound
from sidecar.storage import sql
from sidecar.storage.sql import Statement
from sidecar.storage.store import Store

log = logging.getLogger("sidecar.engine")

Waiter = tuple[Callable[[InstanceInfo], bool], "asyncio.Future[InstanceInfo]"]


class EngineState:
    """What every role of the engine shares (see the module docstring): the store, the active
    instances, dispatch and timers, the waiters. All coroutines run on the sidecar loop."""

    def __init__(
        self,
        store: Store,
        *,
        max_outstanding_per_stream: int = 2000,
        observers: tuple[EngineObserver, ...] = (),
    ) -> None:
        self.store = store
        self.observers = observers  # tracing, metrics (engine/observers.py)
        self.instances: dict[str, Instance] = {}
        self.dispatch = Dispatcher(self.instances, max_outstanding_per_stream)
        self.timers = DurableTimers(self)
        self._waiters: dict[str, list[Waiter]] = {}
        self._next_inbox_id = 1

    # -- start-up and shutdown -------------------------------------------------------------------

    def recover(self) -> None:
        """Load every active instance and its pending work from the database (start-up)."""
        found = self.store.read(sql.load_active)
        for inst in found.instances.values():
            inst.patches = orch.recorded_patches(inst.history)
        self.instances.update(found.instances)
        self._next_inbox_id = found.next_inbox_id
        for fire_ns, iid, execution_id, timer_id in found.timers:
            self.timers.add(fire_ns, iid, execution_id, timer_id)
        for inst in self.instances.values():
            if inst.scheduled_start_ns is not None:
                self.timers.add(
                    inst.scheduled_start_ns, inst.instance_id, inst.execution_id, SCHEDULED_START
                )
            self.dispatch.make_ready(inst)
        for iid, _, task_id in found.activities:
            self.dispatch.queue_activity(self.instances[iid], task_id)
        if self.instances:
            log.info(
                "recovered %d active workflow instance(s), %d pending activities, %d timers",
                len(self.instances),
                len(found.activities),
                len(found.timers),
            )
        self.timers.arm()

    def close(self) -> None:
        """Stop dispatching and end every work stream and waiter."""
        self.dispatch.close()
        self.timers.stop()
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.cancel()

    # -- persistence -----------------------------------------------------------------------------

    def write(
        self, statements: list[Statement], *, defer_for: str | None = None
    ) -> asyncio.Future[Any]:
        """Queue ``statements`` as one op. ``defer_for`` (an instance id): only a worker's
        completion call waits for this commit, so the store may hold it briefly to share an
        fsync with that instance's next step (``Store.write``); what a client waits for is
        never deferred."""
        return self.store.write(sql.apply(statements), defer_key=defer_for)

    def step_due(self, inst: Instance) -> bool:
        """Whether a worker is about to send a step of ``inst`` (a turn queued or running, an
        activity pending). Only then is a write of it held for company: a workflow that waits
        for an event, a timer or a child has its step committed at once, and so does everything
        once the sidecar is shutting down."""
        if self.dispatch.closing:
            return False
        return self.dispatch.turn_due(inst) or bool(inst.activities)

    def inbox_row(self, inst: Instance, event: pb.HistoryEvent) -> Statement:
        """Append ``event`` to the instance's inbox; returns the row to write with it."""
        rid = self._next_inbox_id
        self._next_inbox_id += 1
        inst.inbox.append((rid, event))
        return sql.insert_inbox(rid, inst.instance_id, event)

    # -- reads -----------------------------------------------------------------------------------

    def get_instance(self, instance_id: str) -> InstanceInfo | None:
        inst = self.instances.get(instance_id)
        if inst is not None:
            return inst.info()
        return self.store.read(lambda conn: sql.read_info(conn, instance_id))

    def get_history(self, instance_id: str) -> list[pb.HistoryEvent]:
        """History of the current generation. Raises ``NotFound``.

        A running instance's comes from memory: a turn's events show here once the turn is
        applied, and are on disk once that step's commit is (held steps: ``Store.write``).
        """
        check_instance_id(instance_id)
        inst = self.instances.get(instance_id)
        if inst is not None:
            return list(inst.history)
        events = self.stored_history(instance_id)
        if events is None:
            raise NotFound(f"workflow instance '{instance_id}' not found")
        return events

    def stored_history(self, instance_id: str) -> list[pb.HistoryEvent] | None:
        return self.store.read(lambda conn: sql.read_history(conn, instance_id))

    def list_instance_ids(
        self, *, page_size: int | None = None, continuation_token: str | None = None
    ) -> tuple[list[str], str | None]:
        after = continuation_token or ""
        if not page_size:
            return self.store.read(lambda conn: sql.read_ids(conn, after, -1)), None
        ids = self.store.read(lambda conn: sql.read_ids(conn, after, page_size + 1))
        if len(ids) > page_size:
            return ids[:page_size], ids[page_size - 1]
        return ids, None

    # -- waiters ---------------------------------------------------------------------------------

    async def wait_for_instance(
        self, instance_id: str, *, until: str = "completion"
    ) -> InstanceInfo:
        """Park until the instance has started (``until="start"``) or is terminal.

        A missing instance parks until it is created, as daprd does; the caller's deadline
        ends the wait.
        """
        check_instance_id(instance_id)
        if until == "start":
            return await self.wait(instance_id, lambda i: i.status != PENDING)
        return await self.wait(instance_id, lambda i: i.is_terminal)

    async def wait(
        self, instance_id: str, predicate: Callable[[InstanceInfo], bool]
    ) -> InstanceInfo:
        """Park until the instance's committed state satisfies ``predicate``."""
        await self.settled(instance_id)
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

    def notify(self, instance_id: str, info: InstanceInfo | None = None) -> None:
        """Wake the waiters whose condition the instance's committed state now meets."""
        waiters = self._waiters.get(instance_id)
        if not waiters:
            return
        if info is None:
            info = self.get_instance(instance_id)
        if info is None:
            return
        for predicate, fut in waiters:
            if not fut.done() and predicate(info):
                fut.set_result(info)

    async def settled(self, instance_id: str) -> None:
        """Wait until an instance's final state, already visible in memory, is on disk: a
        caller told "completed" may act on it at once (purge, reuse the id, report it)."""
        inst = self.instances.get(instance_id)
        if inst is not None and inst.final_commit is not None:
            await asyncio.shield(inst.final_commit)

    # -- work streams ----------------------------------------------------------------------------

    @property
    def connected_workers(self) -> int:
        """Open GetWorkItems streams (daprd's metadata calls them connected workers)."""
        return len(self.dispatch.streams)

    def open_stream(self, capabilities: Iterable[int]) -> WorkStream:
        """A worker connected. Stalled instances get another turn, as on daprd, where the
        stalled turn is held until the stalling worker's stream ends and then retried (a
        worker deployed with the missing version or patch then runs them to the end; the
        SDK's versioning example, part2, relies on it); one that stalls again says so once."""
        stream = self.dispatch.open_stream(capabilities)
        for inst in self.instances.values():
            if inst.stalled is not None:
                inst.stalled = None
                self.dispatch.make_ready(inst)
        return stream

    def close_stream(self, stream: WorkStream) -> None:
        self.dispatch.close_stream(stream)
