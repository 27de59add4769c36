"""What the engine tells its observers (tracing, metrics): the hooks and when they are called.

The engine calls each hook synchronously on the sidecar loop, at a point where it already has
the times and the state involved; an observer does only cheap bookkeeping there and leaves the
rest (encoding, export) to its own thread. With no observer configured the engine's only cost
is looping over an empty tuple. Observers may stamp trace context on the events and requests
they are shown (``workflow_creating``, ``turn_applying``, ``continuing_as_new``): those are
persisted afterwards with the rest of the step, as daprd keeps trace context in its history.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from dapr.ext.workflow._durabletask.internal import protos as pb

if TYPE_CHECKING:
    from sidecar.engine.instance import Instance
    from sidecar.engine.orchestration import TurnOutcome

# Client operations as daprd's workflow metrics name them (dapr/dapr pkg/diagnostics
# workflow_monitoring.go): a start, an event added to an instance (raise, terminate, suspend,
# resume all add one), a purge.
CREATE_WORKFLOW = "create_workflow"
ADD_EVENT = "add_event"
PURGE_WORKFLOW = "purge_workflow"

# The trace context of the API call being served (set by the tracing interceptor on the gRPC
# edge, read by the edge's StartInstance): the parent of the workflow it creates.
API_CALL_TRACE: ContextVar[pb.TraceContext | None] = ContextVar("api_call_trace", default=None)


class EngineObserver(Protocol):
    def workflow_creating(self, started: pb.HistoryEvent, parent: pb.TraceContext | None) -> None:
        """A new instance's ``executionStarted`` event, before it is persisted; ``parent`` is
        the caller's trace context, if any."""

    def operation_done(self, operation: str, instance_id: str, began_ns: int, failed: bool) -> None:
        """A client operation (``CREATE_WORKFLOW``, ...) returned or raised."""

    def turn_applying(self, inst: Instance, outcome: TurnOutcome, first_seq: int) -> None:
        """A turn's outcome, applied to ``inst`` in memory (history extended, status set) and
        about to be persisted; ``first_seq`` is where its events start in the history."""

    def continuing_as_new(self, inst: Instance, started: pb.HistoryEvent) -> None:
        """``inst`` (still with the old generation's history) continues as new; ``started`` is
        the new generation's ``executionStarted``, before it is persisted."""

    def activity_completed(
        self,
        inst: Instance,
        request: pb.ActivityRequest,
        response: pb.ActivityResponse,
        sent_ns: int,
    ) -> None:
        """A worker's result for an activity in flight, sent to it at ``sent_ns``."""
