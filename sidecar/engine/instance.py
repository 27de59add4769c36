"""An active workflow instance's runtime state, and the small value helpers every role uses.

``Instance`` is plain data: what the instance is (identity, status, payloads) and what it is
waiting for (inbox, pending activities and timers). What is in flight to a worker (a queued or
dispatched turn) is the dispatcher's bookkeeping (``dispatch.py``), and how an instance maps to
rows is the storage's (``storage/sql.py``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf.timestamp_pb2 import Timestamp

from sidecar.engine.status import TERMINAL_STATUSES, InstanceInfo
from sidecar.errors import InvalidArgument

MAX_ID_LENGTH = 1024
# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799


def now_ns() -> int:
    return time.time_ns()


def to_datetime(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


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
    patches: list[str] = field(default_factory=list)  # see orchestration.InstanceView
    final_commit: asyncio.Future[Any] | None = None  # the write of its terminal state
    done: bool = False
    # What engine/payload.py measured last, so that it measures only what was added since:
    # (execution id, history events, bytes) and (first inbox row id, inbox rows, bytes).
    measured_history: tuple[str, int, int] | None = None
    measured_inbox: tuple[int, int, int] | None = None

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


def check_instance_id(instance_id: str) -> None:
    if not instance_id:
        raise InvalidArgument("an instance id is required")
    if len(instance_id) > MAX_ID_LENGTH:
        raise InvalidArgument(f"instance id is longer than {MAX_ID_LENGTH} characters")


def check_timestamp(timestamp: Timestamp, what: str) -> None:
    """Refuse a ``google.protobuf.Timestamp`` outside its documented range: its fields can hold
    any int64/int32, and the protobuf runtime's conversions raise on such a value."""
    if not (
        MIN_TIMESTAMP_SECONDS <= timestamp.seconds <= MAX_TIMESTAMP_SECONDS
        and 0 <= timestamp.nanos <= 999_999_999
    ):
        raise InvalidArgument(
            f"{what} is not a valid timestamp (seconds {timestamp.seconds}, nanos "
            f"{timestamp.nanos}): it must lie between the years 1 and 9999"
        )


def string_value(value: str | None) -> pb.wrappers_pb2.StringValue | None:
    return None if value is None else pb.wrappers_pb2.StringValue(value=value)
