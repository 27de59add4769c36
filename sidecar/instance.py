"""An active workflow instance's runtime state, its row in SQLite, and small shared helpers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dapr.ext.workflow._durabletask.internal import protos as pb

from .api import TERMINAL_STATUSES, InstanceInfo
from .errors import InvalidArgument
from .orchestration import scheduled_ids

if TYPE_CHECKING:
    from .dispatch import WorkStream

MAX_ID_LENGTH = 1024

Statement = tuple[str, list[tuple[Any, ...]]]


def now_ns() -> int:
    return time.time_ns()


def to_datetime(ns: int) -> datetime:
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
    action_ids: set[int] = field(default_factory=set)  # see orchestration.InstanceView
    final_commit: asyncio.Future[Any] | None = None  # the write of its terminal state
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
            created_at=to_datetime(self.created_ns),
            updated_at=to_datetime(self.updated_ns),
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

    def turn_row(self) -> tuple[Any, ...]:
        """The columns a turn can change, for ``UPDATE_AFTER_TURN``."""
        return (
            self.status,
            self.updated_ns / 1e9,
            self.output,
            self.custom_status,
            self.failure.SerializeToString() if self.failure is not None else None,
            self.stalled.SerializeToString() if self.stalled is not None else None,
            int(self.suspended),
            self.version,
            self.scheduled_start_ns / 1e9 if self.scheduled_start_ns is not None else None,
            self.instance_id,
        )


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


def load_active(conn: Any) -> Recovered:
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
    for inst in instances.values():
        inst.action_ids = scheduled_ids(inst.history)
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
            inst.activities[task_id] = parse(pb.ActivityRequest, blob)
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


def read_info(conn: Any, instance_id: str) -> InstanceInfo | None:
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


def read_history(conn: Any, instance_id: str) -> list[pb.HistoryEvent] | None:
    """A stored instance's history, or None when the instance does not exist."""
    if conn.execute("SELECT 1 FROM instances WHERE instance_id = ?", (instance_id,)).fetchone():
        rows = conn.execute(
            "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,)
        )
        return [parse_event(r[0]) for r in rows]
    return None


def read_ids(conn: Any, after: str, limit: int) -> list[str]:
    """Instance ids after ``after`` in id order; ``limit`` -1 for all."""
    rows = conn.execute(
        "SELECT instance_id FROM instances WHERE instance_id > ? ORDER BY instance_id LIMIT ?",
        (after, limit),
    )
    return [r[0] for r in rows]


def check_instance_id(instance_id: str) -> None:
    if not instance_id:
        raise InvalidArgument("an instance id is required")
    if len(instance_id) > MAX_ID_LENGTH:
        raise InvalidArgument(f"instance id is longer than {MAX_ID_LENGTH} characters")


def string_value(value: str | None) -> pb.wrappers_pb2.StringValue | None:
    return None if value is None else pb.wrappers_pb2.StringValue(value=value)


def parse(cls: Any, blob: bytes | None) -> Any:
    if blob is None:
        return None
    message = cls()
    message.ParseFromString(blob)
    return message


def parse_event(blob: bytes) -> pb.HistoryEvent:
    event = pb.HistoryEvent()
    event.ParseFromString(blob)
    return event
