"""The engine as its edges see it: the typed interface the gRPC and HTTP edges program against.

``WorkflowEngine`` is what a workflow *client* may ask (the Dapr runtime API's gRPC and HTTP
edges need no more); ``TaskHubEngine`` adds what the workers' protocol needs (work streams and
completions), for the TaskHub gRPC edge. ``core.Engine`` implements both. Every call runs on the
sidecar's event loop and raises ``sidecar.errors.SidecarError`` subclasses on bad input, having
changed nothing; the edges map ``SidecarError.code`` to their own status codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine.dispatch import WorkStream
from sidecar.engine.status import InstanceInfo


class WorkflowEngine(Protocol):
    """Client operations and reads. Payloads (input, output, event data) are JSON text, None
    when absent, passed through untouched."""

    @property
    def connected_workers(self) -> int:
        """Open GetWorkItems streams."""
        ...

    def get_instance(self, instance_id: str) -> InstanceInfo | None:
        """The instance, or None when it does not exist (no validation of the id)."""
        ...

    def get_history(self, instance_id: str) -> list[pb.HistoryEvent]:
        """The current generation's history; ``NotFound`` for an unknown instance."""
        ...

    def list_instance_ids(
        self, *, page_size: int | None = None, continuation_token: str | None = None
    ) -> tuple[list[str], str | None]:
        """A page of instance ids in id order, and the token of the next page (None: last)."""
        ...

    async def wait_for_instance(
        self, instance_id: str, *, until: str = "completion"
    ) -> InstanceInfo:
        """Park until the instance has started (``until="start"``) or is terminal."""
        ...

    async def start_instance(
        self,
        *,
        instance_id: str,
        name: str,
        input: str | None = None,
        scheduled_start: datetime | None = None,
        version: str | None = None,
        trace_parent: pb.TraceContext | None = None,
    ) -> str:
        """Create the instance (a terminal one of that id is replaced); returns its id once the
        instance is on disk, whether or not a worker is connected. ``PayloadTooLarge`` when its
        first work item would not fit (``sidecar.limits``). ``trace_parent``: the caller's
        trace context, the parent of the workflow's spans."""
        ...

    async def raise_event(self, instance_id: str, name: str, input: str | None = None) -> None:
        """Deliver an external event (dropped, without error, for a terminal instance);
        ``PayloadTooLarge`` when the instance's next work item would not fit with it."""
        ...

    async def suspend(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        """Suspend; with ``wait``, return once it is suspended (or terminal)."""
        ...

    async def resume(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        """Resume a suspended instance; with ``wait``, return once it runs again."""
        ...

    async def terminate(
        self,
        instance_id: str,
        *,
        output: str | None = None,
        recursive: bool = True,
        wait: bool = True,
    ) -> None:
        """Terminate (its children too when ``recursive``); with ``wait``, until it is terminal."""
        ...

    async def purge(self, instance_id: str, *, recursive: bool = True) -> int:
        """Delete a terminal instance (and its children); returns how many were deleted."""
        ...

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
        """Start a new instance from a terminal one's history up to ``event_id``."""
        ...


class TaskHubEngine(WorkflowEngine, Protocol):
    """The above, and the workers' side of the protocol."""

    def open_stream(self, capabilities: Iterable[int]) -> WorkStream:
        """A new GetWorkItems stream; work items arrive on its ``queue`` (None ends it)."""
        ...

    def close_stream(self, stream: WorkStream) -> None:
        """The stream ended: what was sent on it and not completed is handed out again."""
        ...

    async def complete_activity(self, response: pb.ActivityResponse) -> None:
        """An activity's result (stale or duplicate results are ignored)."""
        ...

    async def complete_turn(self, response: pb.WorkflowResponse) -> None:
        """A worker's answer to a workflow turn (late or duplicate answers are ignored)."""
        ...
