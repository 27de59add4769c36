"""Durable timers, in memory: a heap of due times and one loop callback armed for the earliest.

The rows live in SQLite (``timers`` table, written by the engine with the turn that created
them); this queue only decides *when* to look. A timer never fires early: the callback runs at
or after the due time and pops only entries whose time has come. Timers that fell due while the
sidecar was down are due at once after recovery.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from .instance import now_ns

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
