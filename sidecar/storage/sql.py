"""Every SQL statement the sidecar runs on its tables, and the loaders that turn rows into objects.

The schema is ``schema.sql`` beside this module. Callers never write SQL text: the engine builds
its writes from the ``Statement`` makers below and queues them on the store's writer in one op
(``apply``); reads are functions of a connection, run with ``Store.read``. The writer itself
(``store.py``) runs only transaction control (``BEGIN IMMEDIATE``, ``COMMIT``, savepoints).

Times are stored as REAL seconds since the epoch, messages as serialized protobuf BLOBs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf.message import Message

from sidecar.engine.instance import Instance
from sidecar.engine.status import InstanceInfo

# One statement and its parameter rows: one row runs ``execute``, several ``executemany``.
Statement = tuple[str, list[tuple[Any, ...]]]

SCHEMA_VERSION = 1

M = TypeVar("M", bound=Message)


# -- connection and schema -----------------------------------------------------------------------


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    # Lets a purge give pages back to the file system (``Store.reclaim``). It takes effect
    # only on a new database, so it must come before WAL mode writes the file header.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    # The instance_deleted trigger relies on this: with it on, INSERT OR REPLACE (continue-as-
    # new rewrites the row) would fire it and wipe the new generation's inbox.
    conn.execute("PRAGMA recursive_triggers = OFF")
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def create_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing (``schema.sql`` is idempotent) and record ``SCHEMA_VERSION``."""
    conn.executescript(resources.files(__package__).joinpath("schema.sql").read_text("utf-8"))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def reclaim_pages(conn: sqlite3.Connection, max_pages: int) -> None:
    conn.execute(f"PRAGMA incremental_vacuum({int(max_pages)})").fetchall()


def apply(statements: Sequence[Statement]) -> Callable[[sqlite3.Connection], None]:
    """A write op (``Store.write``) that runs ``statements`` in order."""

    def op(conn: sqlite3.Connection) -> None:
        for sql, params in statements:
            if len(params) == 1:
                conn.execute(sql, params[0])
            else:
                conn.executemany(sql, params)

    return op


# -- workflow instances: writes ------------------------------------------------------------------

UPSERT_INSTANCE = (
    "INSERT OR REPLACE INTO instances (instance_id, name, execution_id, status, created_at,"
    " updated_at, input, output, custom_status, failure, parent, scheduled_start, stalled,"
    " suspended, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
# After a turn only these change (scheduled_start: cleared once the start fired); rewriting the
# whole row, input included, would cost more.
UPDATE_AFTER_TURN = (
    "UPDATE instances SET status = ?, updated_at = ?, output = ?, custom_status = ?, failure = ?,"
    " stalled = ?, suspended = ?, version = ?, scheduled_start = ? WHERE instance_id = ?"
)
DELETE_INSTANCE = "DELETE FROM instances WHERE instance_id = ?"  # the trigger deletes the rest
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


def _blob(message: Message | None) -> bytes | None:
    return message.SerializeToString() if message is not None else None


def _seconds(ns: int | None) -> float | None:
    return ns / 1e9 if ns is not None else None


def upsert_instance(inst: Instance) -> Statement:
    """The whole row: a new instance, a new generation, a rerun."""
    row = (
        inst.instance_id,
        inst.name,
        inst.execution_id,
        inst.status,
        inst.created_ns / 1e9,
        inst.updated_ns / 1e9,
        inst.input,
        inst.output,
        inst.custom_status,
        _blob(inst.failure),
        _blob(inst.parent),
        _seconds(inst.scheduled_start_ns),
        _blob(inst.stalled),
        int(inst.suspended),
        inst.version,
    )
    return (UPSERT_INSTANCE, [row])


def update_after_turn(inst: Instance) -> Statement:
    """The columns a turn can change."""
    row = (
        inst.status,
        inst.updated_ns / 1e9,
        inst.output,
        inst.custom_status,
        _blob(inst.failure),
        _blob(inst.stalled),
        int(inst.suspended),
        inst.version,
        _seconds(inst.scheduled_start_ns),
        inst.instance_id,
    )
    return (UPDATE_AFTER_TURN, [row])


def delete_instances(instance_ids: Iterable[str]) -> Statement:
    """Purge, or wipe a terminal instance whose ID is used again (the trigger takes the rest)."""
    return (DELETE_INSTANCE, [(iid,) for iid in instance_ids])


def insert_history(
    instance_id: str, first_seq: int, events: Iterable[pb.HistoryEvent]
) -> Statement:
    rows = [(instance_id, first_seq + i, e.SerializeToString()) for i, e in enumerate(events)]
    return (INSERT_HISTORY, rows)


def insert_inbox(row_id: int, instance_id: str, event: pb.HistoryEvent) -> Statement:
    return (INSERT_INBOX, [(row_id, instance_id, event.SerializeToString())])


def delete_inbox_rows(row_ids: Iterable[int]) -> Statement:
    return (DELETE_INBOX_ROW, [(rid,) for rid in row_ids])


def insert_activities(
    instance_id: str, execution_id: str, requests: Iterable[pb.ActivityRequest]
) -> Statement:
    rows = [(instance_id, execution_id, r.taskId, r.SerializeToString()) for r in requests]
    return (INSERT_ACTIVITY, rows)


def delete_activity(instance_id: str, task_id: int) -> Statement:
    return (DELETE_ACTIVITY, [(instance_id, task_id)])


def insert_timers(
    instance_id: str, execution_id: str, timers: Iterable[tuple[int, int]]
) -> Statement:
    """``timers``: (fire at ns, timer id) pairs."""
    rows = [(instance_id, execution_id, timer_id, ns / 1e9, b"") for ns, timer_id in timers]
    return (INSERT_TIMER, rows)


def delete_timer(instance_id: str, timer_id: int) -> Statement:
    return (DELETE_TIMER, [(instance_id, timer_id)])


def delete_pending_work(instance_id: str) -> list[Statement]:
    """A terminal instance's inbox, activities and timers (its history and row stay)."""
    return [
        (f"DELETE FROM {t} WHERE instance_id = ?", [(instance_id,)])
        for t in ("inbox", "activities", "timers")
    ]


def delete_generation(instance_id: str) -> list[Statement]:
    """Everything of the current generation but the row (continue-as-new starts the next)."""
    return [
        (f"DELETE FROM {t} WHERE instance_id = ?", [(instance_id,)])
        for t in ("history", "inbox", "activities", "timers")
    ]


# -- workflow instances: reads -------------------------------------------------------------------

SELECT_ACTIVE = (
    "SELECT instance_id, name, execution_id, status, created_at, updated_at, input,"
    " output, custom_status, failure, parent, scheduled_start, stalled, suspended,"
    " version FROM instances WHERE status NOT IN (1, 3, 5)"
)


@dataclass
class Recovered:
    """What start-up finds on disk: active instances with their pending work."""

    instances: dict[str, Instance]
    activities: list[tuple[str, str, int]]  # (instance id, execution id, task id)
    timers: list[tuple[int, str, str, int]]  # (fire at ns, instance id, execution id, timer id)
    next_inbox_id: int


def load_active(conn: sqlite3.Connection) -> Recovered:
    """Read every active instance, its history, inbox, pending activities and timers."""
    instances: dict[str, Instance] = {}
    for r in conn.execute(SELECT_ACTIVE):
        instances[r[0]] = Instance(
            instance_id=r[0],
            name=r[1],
            execution_id=r[2],
            status=r[3],
            created_ns=int(r[4] * 1e9),
            updated_ns=int(r[5] * 1e9),
            input=r[6],
            output=r[7],
            custom_status=r[8],
            failure=parse(pb.TaskFailureDetails, r[9]),
            parent=parse(pb.ParentInstanceInfo, r[10]),
            scheduled_start_ns=int(r[11] * 1e9) if r[11] is not None else None,
            # r[12], a stall, is not restored: a stalled instance gets another chance after
            # a restart, as on daprd.
            suspended=bool(r[13]),
            version=r[14],
        )
    for iid, blob in conn.execute(
        "SELECT h.instance_id, h.event FROM history h JOIN instances i"
        " ON i.instance_id = h.instance_id WHERE i.status NOT IN (1, 3, 5)"
        " ORDER BY h.instance_id, h.seq"
    ):
        instances[iid].history.append(parse_event(blob))
    next_inbox_id = 1
    for rid, iid, blob in conn.execute("SELECT id, instance_id, event FROM inbox ORDER BY id"):
        next_inbox_id = max(next_inbox_id, rid + 1)
        if iid in instances:
            instances[iid].inbox.append((rid, parse_event(blob)))
    activities = []
    for iid, execution_id, task_id, blob in conn.execute(
        "SELECT instance_id, execution_id, task_id, request FROM activities"
    ):
        inst = instances.get(iid)
        if inst is not None and inst.execution_id == execution_id:
            inst.activities[task_id] = parse_message(pb.ActivityRequest, blob)
            activities.append((iid, execution_id, task_id))
    timers = []
    for iid, execution_id, timer_id, fire_at in conn.execute(
        "SELECT instance_id, execution_id, timer_id, fire_at FROM timers"
    ):
        inst = instances.get(iid)
        if inst is not None and inst.execution_id == execution_id:
            inst.timers[timer_id] = int(fire_at * 1e9)
            timers.append((int(fire_at * 1e9), iid, execution_id, timer_id))
    return Recovered(instances, activities, timers, next_inbox_id)


def read_info(conn: sqlite3.Connection, instance_id: str) -> InstanceInfo | None:
    row = conn.execute(
        "SELECT instance_id, name, status, created_at, updated_at, input, output,"
        " custom_status, failure, parent, version FROM instances WHERE instance_id = ?",
        (instance_id,),
    ).fetchone()
    if row is None:
        return None
    parent = parse(pb.ParentInstanceInfo, row[9])
    return InstanceInfo(
        instance_id=row[0],
        name=row[1],
        status=row[2],
        created_at=datetime.fromtimestamp(row[3], tz=UTC),
        updated_at=datetime.fromtimestamp(row[4], tz=UTC),
        input=row[5],
        output=row[6],
        custom_status=row[7],
        failure=parse(pb.TaskFailureDetails, row[8]),
        parent_instance_id=parent.workflowInstance.instanceId if parent else None,
        version=row[10],
    )


def read_history(conn: sqlite3.Connection, instance_id: str) -> list[pb.HistoryEvent] | None:
    """A stored instance's history, or None when the instance does not exist."""
    if conn.execute("SELECT 1 FROM instances WHERE instance_id = ?", (instance_id,)).fetchone():
        rows = conn.execute(
            "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)
        )
        return [parse_event(r[0]) for r in rows]
    return None


def read_ids(conn: sqlite3.Connection, after: str, limit: int) -> list[str]:
    """Instance ids after ``after`` in id order; ``limit`` -1 for all."""
    rows = conn.execute(
        "SELECT instance_id FROM instances WHERE instance_id > ? ORDER BY instance_id LIMIT ?",
        (after, limit),
    )
    return [r[0] for r in rows]


def parse(cls: type[M], blob: bytes | None) -> M | None:
    """A stored message, or None for a NULL column."""
    return None if blob is None else parse_message(cls, blob)


def parse_message(cls: type[M], blob: bytes) -> M:
    message: M = cls()
    message.ParseFromString(blob)
    return message


def parse_event(blob: bytes) -> pb.HistoryEvent:
    event = pb.HistoryEvent()
    event.ParseFromString(blob)
    return event


# -- the Dapr state API's key/value rows (table ``state``) ---------------------------------------

STATE_SELECT = "SELECT value, etag FROM state WHERE store = ? AND key = ?"
STATE_EXISTS = "SELECT 1 FROM state WHERE store = ? AND key = ?"
STATE_UPDATE_IF_ETAG = (
    "UPDATE state SET value = ?, etag = ?, metadata = NULL WHERE store = ? AND key = ? AND etag = ?"
)
STATE_INSERT_IF_ABSENT = (
    "INSERT INTO state (store, key, value, etag) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (store, key) DO NOTHING"
)
STATE_UPSERT = (
    "INSERT INTO state (store, key, value, etag) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (store, key) DO UPDATE"
    " SET value = excluded.value, etag = excluded.etag, metadata = NULL"
)
STATE_DELETE_IF_ETAG = "DELETE FROM state WHERE store = ? AND key = ? AND etag = ?"
STATE_DELETE = "DELETE FROM state WHERE store = ? AND key = ?"

_IN_CHUNK = 500  # keys per SELECT … IN (…): well under SQLite's bound-parameter limit


def read_state(conn: sqlite3.Connection, store: str, key: str) -> tuple[bytes, int] | None:
    """A key's (value, etag), or None when it does not exist."""
    row = conn.execute(STATE_SELECT, (store, key)).fetchone()
    return None if row is None else (bytes(row[0]), int(row[1]))


def read_states(
    conn: sqlite3.Connection, store: str, keys: Sequence[str]
) -> dict[str, tuple[bytes, int]]:
    """(value, etag) of each of ``keys`` (distinct) that exists."""
    found: dict[str, tuple[bytes, int]] = {}
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i : i + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        for k, value, etag in conn.execute(
            f"SELECT key, value, etag FROM state WHERE store = ? AND key IN ({marks})",
            (store, *chunk),
        ):
            found[k] = (bytes(value), etag)
    return found
