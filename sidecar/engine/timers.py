"""Durable timers and scheduled starts: when to wake up, and what to deliver when one is due.

The rows live in SQLite (``timers`` table, written with the turn that created them); in memory a
heap of due times and one loop callback armed for the earliest decide *when* to look. A timer
never fires early: the callback runs at or after the due time and pops only entries whose time
has come. Timers that fell due while the sidecar was down are due at once after recovery. A due
timer becomes a ``timerFired`` event in its instance's inbox, as durabletask-go's backend
delivers it (and as daprd's reminders do); a due scheduled start releases the instance's first
turn.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any, Protocol

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import orchestration as orch
from sidecar.engine.dispatch import Dispatcher
from sidecar.engine.instance import Instance, now_ns
from sidecar.storage import sql
from sidecar.storage.sql import Statement

# Sleep at most this long at a time: far timers (e.g. the SDK's year-9999 sentinel for an
# indefinite wait) would overflow the loop's clock, and the wall clock may jump.
MAX_SLEEP_SECONDS = 3600.0

# Entry: (fire at ns, tie-breaker, instance id, execution id, timer id). Timer id -1 marks a
# scheduled start rather than a workflow timer.
Entry = tuple[int, int, str, str, int]
SCHEDULED_START = -1


class TimerQueue:
    def __init__(self, on_due: Callable[[list[Entry]], None]) -> None:
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._on_due = on_due
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: int | None = None
        self._stopped = False
        self._stale = 0

    def push(self, fire_ns: int, instance_id: str, execution_id: str, timer_id: int) -> None:
        heapq.heappush(self._heap, (fire_ns, next(self._seq), instance_id, execution_id, timer_id))

    def arm(self) -> None:
        """Make sure the loop wakes up for the earliest entry (call after pushes)."""
        if not self._heap or self._stopped:
            return
        due = self._heap[0][0]
        if self._handle is not None and self._armed_for is not None and self._armed_for <= due:
            return
        if self._handle is not None:
            self._handle.cancel()
        delay = min(max(0.0, (due - now_ns()) / 1e9), MAX_SLEEP_SECONDS)
        self._armed_for = due
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def note_stale(self, count: int, is_live: Callable[[Entry], bool]) -> None:
        """``count`` entries no longer matter; rebuild the heap once most of it is stale."""
        self._stale += count
        if self._stale > 1000 and 2 * self._stale > len(self._heap):
            self._heap = [e for e in self._heap if is_live(e)]
            heapq.heapify(self._heap)
            self._stale = 0

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()

    def _fire(self) -> None:
        self._handle = None
        self._armed_for = None
        now = now_ns()
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap))
        if due:
            self._on_due(due)
        self.arm()


class TimerHost(Protocol):
    """What delivering a due timer needs of the engine (``state.EngineState`` is one)."""

    instances: dict[str, Instance]
    dispatch: Dispatcher

    def inbox_row(self, inst: Instance, event: pb.HistoryEvent) -> Statement: ...

    def write(
        self, statements: list[Statement], *, defer_for: str | None = None
    ) -> asyncio.Future[Any]: ...


class DurableTimers:
    """The engine's pending timers and scheduled starts (their rows are written by the roles that
    create them, with the state they belong to)."""

    def __init__(self, host: TimerHost) -> None:
        self._host = host
        self._queue = TimerQueue(self._due)

    def add(self, fire_ns: int, instance_id: str, execution_id: str, timer_id: int) -> None:
        """Remember a timer (``SCHEDULED_START`` for a start); call ``arm`` after adding."""
        self._queue.push(fire_ns, instance_id, execution_id, timer_id)

    def arm(self) -> None:
        self._queue.arm()

    def stop(self) -> None:
        self._queue.stop()

    def forget(self, inst: Instance) -> None:
        """Drop an instance's pending timers; their heap entries go stale and are compacted away
        in bulk (a sentinel timer of an indefinite wait would otherwise stay until 9999)."""
        stale = len(inst.timers) + (inst.scheduled_start_ns is not None)
        inst.timers.clear()
        self._queue.note_stale(stale, self._is_live)

    def _is_live(self, entry: Entry) -> bool:
        _, _, iid, execution_id, timer_id = entry
        inst = self._host.instances.get(iid)
        if inst is None or inst.done or inst.execution_id != execution_id:
            return False
        if timer_id == SCHEDULED_START:
            return inst.scheduled_start_ns is not None
        return timer_id in inst.timers

    def _due(self, entries: list[Entry]) -> None:
        """Deliver ``timerFired`` for every due timer still wanted; release due scheduled starts."""
        host = self._host
        now = now_ns()
        statements: list[Statement] = []
        fired: set[str] = set()
        for fire_ns, _, iid, execution_id, timer_id in entries:
            inst = host.instances.get(iid)
            if inst is None or inst.done or inst.execution_id != execution_id:
                continue
            if timer_id == SCHEDULED_START:
                if inst.scheduled_start_ns is not None:
                    inst.scheduled_start_ns = None
                    host.dispatch.make_ready(inst)
                continue
            if inst.timers.pop(timer_id, None) is None:
                continue
            fire_at = pb.timestamp_pb2.Timestamp()
            fire_at.FromNanoseconds(fire_ns)
            event = orch.new_event(
                now, timerFired=pb.TimerFiredEvent(fireAt=fire_at, timerId=timer_id)
            )
            statements.append(sql.delete_timer(iid, timer_id))
            statements.append(host.inbox_row(inst, event))
            fired.add(iid)
            host.dispatch.make_ready(inst)
        if statements:
            # Nobody waits for this commit: a step of the instance, when it is one instance's
            # (its turn is queued now, so the worker's answer is the next step).
            host.write(statements, defer_for=fired.pop() if len(fired) == 1 else None)
