"""An instance's status as reads report it: the runtime status numbers, their daprd names, and
``InstanceInfo``, the engine's read model of one instance (what GetInstance answers with).

The edges call the engine through ``interface.WorkflowEngine`` and read instances as
``InstanceInfo``; they never touch storage or runtime state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dapr.ext.workflow._durabletask.internal import protos as pb

# Runtime statuses, as the protocol's OrchestrationStatus enum numbers them.
RUNNING = pb.ORCHESTRATION_STATUS_RUNNING
COMPLETED = pb.ORCHESTRATION_STATUS_COMPLETED
CONTINUED_AS_NEW = pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW
FAILED = pb.ORCHESTRATION_STATUS_FAILED
CANCELED = pb.ORCHESTRATION_STATUS_CANCELED
TERMINATED = pb.ORCHESTRATION_STATUS_TERMINATED
PENDING = pb.ORCHESTRATION_STATUS_PENDING
SUSPENDED = pb.ORCHESTRATION_STATUS_SUSPENDED
STALLED = pb.ORCHESTRATION_STATUS_STALLED

TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, TERMINATED, CANCELED})

# The names daprd's workflow API (gRPC runtime service and HTTP) uses for each status.
STATUS_NAMES = {
    RUNNING: "RUNNING",
    COMPLETED: "COMPLETED",
    CONTINUED_AS_NEW: "CONTINUED_AS_NEW",
    FAILED: "FAILED",
    CANCELED: "CANCELED",
    TERMINATED: "TERMINATED",
    PENDING: "PENDING",
    SUSPENDED: "SUSPENDED",
    STALLED: "STALLED",
}


@dataclass(frozen=True)
class InstanceInfo:
    """A snapshot of one workflow instance, as GetInstance reports it."""

    instance_id: str
    name: str
    status: int
    created_at: datetime
    updated_at: datetime
    input: str | None
    output: str | None
    custom_status: str | None
    failure: pb.TaskFailureDetails | None
    parent_instance_id: str | None
    version: str | None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, "UNKNOWN")
