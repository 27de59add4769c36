"""``Engine``: the engine the edges call (``interface.TaskHubEngine``), built from its parts.

It is the shared state (``state.EngineState``: instances, recovery, reads, waiters, streams)
with one object or function per role handling the rest: client commands (``commands.py``), turn
completion (``turns.py``), activity results (``activities.py``); timers live in the state
(``timers.py``). This module only wires them and hands each call to its role, so a reader finds
what a call does in the role's module, and the roles depend on the state, never on each other
except commands on turn completion (a command that ends an instance completes its turn).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import activities
from sidecar.engine.commands import ClientCommands
from sidecar.engine.instance import now_ns
from sidecar.engine.observers import (
    ADD_EVENT,
    API_CALL_TRACE,
    CREATE_WORKFLOW,
    PURGE_WORKFLOW,
    EngineObserver,
)
from sidecar.engine.state import EngineState
from sidecar.engine.turns import TurnCompletion
from sidecar.storage.store import Store

T = TypeVar("T")


class Engine(EngineState):
    """See the module docstring. All public coroutines run on the sidecar loop."""

    def __init__(
        self,
        store: Store,
        *,
        max_outstanding_per_stream: int = 2000,
        observers: tuple[EngineObserver, ...] = (),
    ) -> None:
        super().__init__(
            store, max_outstanding_per_stream=max_outstanding_per_stream, observers=observers
        )
        self.turns = TurnCompletion(self)
        self.commands = ClientCommands(self, self.turns)
        self.dispatch.on_oversized = self.turns.fail_oversized

    # -- client commands -------------------------------------------------------------------------

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
        start = self.commands.start_instance(
            instance_id=instance_id,
            name=name,
            input=input,
            scheduled_start=scheduled_start,
            version=version,
            # Else the traced API call being served, whichever edge it came through.
            trace_parent=trace_parent or API_CALL_TRACE.get(),
        )
        return await self._observed(CREATE_WORKFLOW, instance_id, start)

    async def raise_event(self, instance_id: str, name: str, input: str | None = None) -> None:
        await self._observed(
            ADD_EVENT, instance_id, self.commands.raise_event(instance_id, name, input)
        )

    async def suspend(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        await self._observed(
            ADD_EVENT, instance_id, self.commands.suspend(instance_id, reason, wait)
        )

    async def resume(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        await self._observed(
            ADD_EVENT, instance_id, self.commands.resume(instance_id, reason, wait)
        )

    async def terminate(
        self,
        instance_id: str,
        *,
        output: str | None = None,
        recursive: bool = True,
        wait: bool = True,
    ) -> None:
        terminate = self.commands.terminate(
            instance_id, output=output, recursive=recursive, wait=wait
        )
        await self._observed(ADD_EVENT, instance_id, terminate)

    async def purge(self, instance_id: str, *, recursive: bool = True) -> int:
        purge = self.commands.purge(instance_id, recursive=recursive)
        return await self._observed(PURGE_WORKFLOW, instance_id, purge)

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
        return await self.commands.rerun_from_event(
            source_id,
            event_id,
            new_instance_id=new_instance_id,
            input=input,
            overwrite_input=overwrite_input,
            new_child_instance_id=new_child_instance_id,
        )

    async def _observed(self, operation: str, instance_id: str, work: Awaitable[T]) -> T:
        """Await a client command and tell the observers how it went (daprd's operation
        metrics; a start's create_orchestration span ends here)."""
        if not self.observers:
            return await work
        began = now_ns()
        failed = True
        try:
            result = await work
            failed = False
            return result
        finally:
            for observer in self.observers:
                observer.operation_done(operation, instance_id, began, failed)

    # -- workers' completions --------------------------------------------------------------------

    async def complete_activity(self, response: pb.ActivityResponse) -> None:
        await activities.complete_activity(self, response)

    async def complete_turn(self, response: pb.WorkflowResponse) -> None:
        await self.turns.complete(response)
