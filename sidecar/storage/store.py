"""The sidecar's SQLite database: one writer thread with group commit, and reads.

Contract (kept deliberately small):

* ``Store.write(op)`` runs ``op(conn)`` inside a ``BEGIN IMMEDIATE`` transaction on the single
  writer connection and resolves the returned asyncio future with ``op``'s return value only
  after ``COMMIT`` returned, i.e. after the data is on disk (WAL, ``synchronous=FULL``).
  Several ops queued at once share one transaction and one fsync (group commit); an op that
  raises is rolled back alone and its future gets the error (the batch is then re-run with a
  SAVEPOINT around each op, so ops must be plain functions of their arguments).
  ``op`` must be quick and must not block on anything but SQLite.
* ``Store.write(op, defer_key=k)`` may wait for more ops before committing, so that one fsync
  covers several of them: the writer holds the batch while every op in it has the same
  ``defer_key``, there are fewer than ``MAX_DEFERRED`` of them, and each arrives within
  ``commit_delay`` seconds of the one before. Any other op (no key, or another key) commits the
  whole batch at once. Only writes whose acknowledgement nobody is waiting on urgently should
  carry a key (the engine's mid-workflow steps, keyed by instance: a worker's completion call
  waits, a client does not).
* ``Store.read(fn)`` runs ``fn(conn)`` on the calling thread's read connection. It sees only
  committed data. Use it for data the engine does not keep in memory (terminal instances).
* A failed COMMIT (disk full, I/O error) is fatal: the in-memory engine state would no longer
  match the disk, so the process logs the error and exits; a restart recovers from the disk.

The schema (``schema.sql``) and every statement are in ``sql.py``; this module runs only
transactions. The schema version lives in ``PRAGMA user_version``; a database written by a
newer sidecar is refused with ``StoreError`` rather than misread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sidecar.storage import sql

log = logging.getLogger("sidecar.store")

T = TypeVar("T")
WriteOp = Callable[[sqlite3.Connection], Any]
# op, its future, its defer key (None: commit at once), when it was queued (time.monotonic())
_Queued = tuple[WriteOp, "asyncio.Future[Any]", Hashable | None, float]
_Batched = tuple[WriteOp, "asyncio.Future[Any]", Hashable | None]

# A held batch commits once it has this many ops. Each is a worker's completion call waiting for
# its answer on one of dapr.ext.workflow's thread pools (cpu_count + 4 threads for activities,
# as many for workflow turns): a batch that kept growing would leave the worker no thread to
# run the next work item on, and the wait would end only with the delay. The engine holds a
# chain's results and turns, which alternate, so a batch holds at most 5 of either: no more
# than a one-core worker's pool, and the op after the fifth is the tenth, which commits.
MAX_DEFERRED = 10


class StoreError(Exception):
    """The database cannot be opened or used (unwritable path, newer schema, corrupt file)."""


class Store:
    """The sidecar's database. ``path`` may be ``":memory:"`` (nothing survives the process)."""

    def __init__(self, path: str, *, commit_delay: float = 0.0) -> None:
        self.path = path
        self.in_memory = path == ":memory:"
        if not 0 <= commit_delay < float("inf"):
            raise ValueError(f"commit_delay must be a number of seconds >= 0, not {commit_delay}")
        # Nothing to save by waiting when a commit costs no fsync.
        self.commit_delay = 0.0 if self.in_memory else commit_delay
        self._queue: queue.SimpleQueue[_Queued | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        try:
            if not self.in_memory:
                parent = os.path.dirname(os.path.abspath(path))
                os.makedirs(parent, exist_ok=True)
            self._writer = sql.connect(path)
            self._migrate(self._writer)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {path!r}: {exc}") from exc
        self.commits = 0

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = sql.schema_version(conn)
        if version > sql.SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {version} is newer than this sidecar's"
                f" ({sql.SCHEMA_VERSION}); upgrade the sidecar or use another --db"
            )
        sql.create_schema(conn)

    # -- reads -------------------------------------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on this thread's read connection (committed data only)."""
        if self.in_memory:
            # One shared in-memory database: reads go through the writer connection; the
            # writer thread holds it only inside ``_run_batch``, guarded by this lock.
            with self._memory_lock:
                return fn(self._writer)
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sql.connect(self.path)
            self._local.conn = conn
        return fn(conn)

    _memory_lock = threading.Lock()

    # -- writes ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._writer_loop, name="sidecar-store", daemon=True)
        self._thread.start()

    def write(self, op: WriteOp, *, defer_key: Hashable | None = None) -> asyncio.Future[Any]:
        """Queue ``op`` for the next transaction; the future resolves after COMMIT.

        With a ``defer_key`` the commit may wait for more ops of the same key (module doc)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put((op, fut, defer_key, time.monotonic()))
        return fut

    def flush(self) -> asyncio.Future[Any]:
        """Commit whatever is held now; the future resolves once it is on disk."""
        if self._thread is None:  # not started or closed: nothing is queued
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut
        return self.write(_nothing)

    def reclaim(self, max_pages: int = 2000) -> None:
        """Give up to ``max_pages`` free pages back to the file system, in the background.

        Not awaited: it is housekeeping, and a crash before it runs loses nothing.
        """
        if self.in_memory or self._thread is None:
            return
        fut = asyncio.get_running_loop().create_future()
        self._queue.put((_vacuum(max_pages), fut, None, time.monotonic()))

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self._writer.close()

    def _writer_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, stop = self._collect(item)
            self._run_batch(batch)
            if stop:
                return

    def _collect(self, first: _Queued) -> tuple[list[_Batched], bool]:
        """The batch that starts with ``first``: everything queued meanwhile and, while the batch
        may be held (module doc), what arrives next. Returns the batch and whether the store is
        closing.

        Holding pays when one workflow's steps are all there is: its next step follows within a
        round trip to the worker, and every commit saved is CPU and a wake-up the worker does
        not compete with. Steps of several workflows arriving together share commits anyway
        (everything queued during one commit goes into the next), so they are not held."""
        batch = [first[:3]]
        key, last = first[2], first[3]
        while True:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                remaining = last + self.commit_delay - time.monotonic()
                if key is None or len(batch) >= MAX_DEFERRED or remaining <= 0:
                    return batch, False
                try:
                    nxt = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return batch, False
            if nxt is None:
                return batch, True
            batch.append(nxt[:3])
            if nxt[2] != key:
                key = None  # an urgent op or another workflow's: commit the batch at once
            last = nxt[3]

    def _run_batch(self, batch: list[_Batched]) -> None:
        conn = self._writer
        with self._memory_lock if self.in_memory else contextlib.nullcontext():
            try:
                results = self._apply(conn, batch)
                conn.execute("COMMIT")
                self.commits += 1
            except sqlite3.Error as exc:
                log.critical("sidecar: database commit failed, stopping: %s", exc)
                os._exit(70)
        if results:
            # One wake-up of the event loop for the whole batch, not one per future. Steps that
            # could be held are answered a loop iteration later: when a batch ends a hold,
            # the write that ended it (say a workflow's last turn, whose waiting client is told
            # from the next iteration) goes out ahead of the nine answers to the worker.
            first = [r for r, (_, _, key) in zip(results, batch, strict=True) if key is None]
            later = [r for r, (_, _, key) in zip(results, batch, strict=True) if key is not None]
            results[0][0].get_loop().call_soon_threadsafe(_settle, first, later)

    @staticmethod
    def _apply(
        conn: sqlite3.Connection, batch: list[_Batched]
    ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Run the batch's ops in one open transaction; returns (future, ok, value) triples.

        Fast path: the ops run back to back. Ops almost never fail (a state-store ETag
        mismatch is the usual case), so only when one does is the transaction rolled back and
        the batch run again with a SAVEPOINT around each op, which fails that op alone. Two
        statements fewer per op is a sixth of the sidecar's SQL on an order workflow.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            return [(fut, True, op(conn)) for op, fut, _ in batch]
        except Exception:
            if conn.in_transaction:  # some errors (a full disk) have rolled it back already
                conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        for op, fut, _ in batch:
            conn.execute("SAVEPOINT op")
            try:
                value = op(conn)
            except Exception as exc:  # an op's own error fails that op only
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((fut, False, exc))
                continue
            conn.execute("RELEASE op")
            results.append((fut, True, value))
        return results


def _nothing(conn: sqlite3.Connection) -> None:
    return None


def _vacuum(max_pages: int) -> WriteOp:
    def op(conn: sqlite3.Connection) -> None:
        sql.reclaim_pages(conn, max_pages)

    return op


def _settle(
    first: list[tuple[asyncio.Future[Any], bool, Any]],
    later: list[tuple[asyncio.Future[Any], bool, Any]],
) -> None:
    for fut, ok, value in first:
        _resolve(fut, ok, value)
    if later:
        later[0][0].get_loop().call_soon(_settle, later, [])


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)
