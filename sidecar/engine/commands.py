"""Client commands: start, raise an event, suspend, resume, terminate, purge, rerun.

Each validates its input (a ``SidecarError`` changes nothing; a payload that would make the
instance's next work item too large is ``PayloadTooLarge``: engine/payload.py), changes memory,
queues the rows on the store's writer and returns once they are on disk, waiting further where
the protocol says so (daprd blocks until the instance has been suspended or ended; see
docs/sidecar-internals.md, "The engine's coroutines").

A start returns once the instance is on disk, with or without a worker. durabletask-go's
executor (backend/executor.go, StartInstance) waits for the first turn as well, and daprd, whose
workflow actors exist only while a worker is connected, does not even create the instance
until one connects: the SDK's ``schedule_new_workflow`` sets no deadline, so with no worker it
would hang. docs/sidecar-apis.md, "Starting without a worker", records the difference.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import generations, payload
from sidecar.engine import orchestration as orch
from sidecar.engine.instance import Instance, check_instance_id, now_ns, string_value
from sidecar.engine.state import EngineState
from sidecar.engine.status import PENDING, RUNNING, STALLED, SUSPENDED
from sidecar.engine.timers import SCHEDULED_START
from sidecar.engine.turns import TurnCompletion
from sidecar.errors import (
    ActiveInstanceExists,
    AlreadyExists,
    InstanceNotFound,
    InvalidArgument,
    NotCompleted,
    NotFound,
    PayloadTooLarge,
    Stalled,
)
from sidecar.limits import describe, text_size
from sidecar.storage import sql
from sidecar.storage.sql import Statement


class ClientCommands:
    """The commands a workflow client sends, applied to ``state``; ``turns`` ends instances."""

    def __init__(self, state: EngineState, turns: TurnCompletion) -> None:
        self.state = state
        self.turns = turns

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
        check_instance_id(instance_id)
        if not name:
            raise InvalidArgument("a workflow name is required")
        existing = self.state.instances.get(instance_id)
        if existing is not None and not existing.done:
            raise ActiveInstanceExists(instance_id)
        now = now_ns()
        execution_id = orch.new_execution_id()
        started = pb.ExecutionStartedEvent(
            name=name,
            input=string_value(input),
            version=string_value(version) if version else None,
            workflowInstance=pb.WorkflowInstance(
                instanceId=instance_id, executionId=string_value(execution_id)
            ),
        )
        scheduled_ns = None
        if scheduled_start is not None:
            scheduled_ns = int(scheduled_start.timestamp() * 1e9)
            started.scheduledStartTimestamp.FromNanoseconds(scheduled_ns)
            if scheduled_ns <= now:
                scheduled_ns = None
        first = orch.new_event(now, executionStarted=started)
        for observer in self.state.observers:
            observer.workflow_creating(first, trace_parent)
        payload.check_first_work_item(instance_id, first)
        inst = Instance(
            instance_id=instance_id,
            name=name,
            execution_id=execution_id,
            status=PENDING,
            created_ns=now,
            updated_ns=now,
            input=input,
            scheduled_start_ns=scheduled_ns,
        )
        self.state.instances[instance_id] = inst
        statements = [sql.delete_instances([instance_id])]  # a terminal ID is reused: wipe it
        statements.append(self.state.inbox_row(inst, first))
        statements.append(sql.upsert_instance(inst))
        commit = self.state.write(statements)
        if scheduled_ns is not None:
            self.state.timers.add(scheduled_ns, instance_id, execution_id, SCHEDULED_START)
            self.state.timers.arm()
        else:
            self.state.dispatch.make_ready(inst)
        await commit
        self.state.notify(instance_id)
        return instance_id

    async def raise_event(self, instance_id: str, name: str, input: str | None = None) -> None:
        check_instance_id(instance_id)
        if not name:
            raise InvalidArgument("an event name is required")
        inst = self._active_or_raise(instance_id)
        if inst is None:
            return  # terminal: accepted and dropped, as daprd does
        if inst.status == STALLED:
            raise Stalled(f"workflow '{instance_id}' is stalled")
        event = orch.new_event(
            now_ns(), eventRaised=pb.EventRaisedEvent(name=name, input=string_value(input))
        )
        payload.check_room(inst, [event], f"event '{name}'")
        commit = self.state.write([self.state.inbox_row(inst, event)])
        self.state.dispatch.make_ready(inst)
        await commit

    async def suspend(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        check_instance_id(instance_id)
        inst = self._active_or_raise(instance_id)
        if inst is not None and inst.status == STALLED:
            raise Stalled(f"workflow '{instance_id}' is stalled")
        if inst is None or self._will_be_suspended(inst):
            # Already suspended (or about to be): a second executionSuspended would send the
            # SDK's worker into an endless loop, and there is nothing more to do anyway.
            if inst is not None and wait:
                await self.state.wait(instance_id, lambda i: i.status == SUSPENDED or i.is_terminal)
            return
        event = orch.new_event(
            now_ns(),
            executionSuspended=pb.ExecutionSuspendedEvent(input=string_value(reason or None)),
        )
        payload.check_room(inst, [event], "the reason to suspend")
        commit = self.state.write([self.state.inbox_row(inst, event)])
        self.state.dispatch.make_ready(inst)
        await commit
        if wait:
            await self.state.wait(instance_id, lambda i: i.status == SUSPENDED or i.is_terminal)

    async def resume(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        """Resume a suspended instance. Resuming one that is not suspended (and has no suspend
        on its way) does nothing: the SDK would fail the workflow on an unexpected
        executionResumed event (dapr.ext.workflow's worker raises WorkflowStateError on it:
        _durabletask worker.py, process_event), which nobody asking to resume wants."""
        check_instance_id(instance_id)
        inst = self._active_or_raise(instance_id)
        if inst is None or not self._will_be_suspended(inst):
            return
        event = orch.new_event(
            now_ns(), executionResumed=pb.ExecutionResumedEvent(input=string_value(reason or None))
        )
        payload.check_room(inst, [event], "the reason to resume")
        commit = self.state.write([self.state.inbox_row(inst, event)])
        self.state.dispatch.make_ready(inst)
        await commit
        if wait:
            await self.state.wait(instance_id, lambda i: i.status != SUSPENDED)

    @staticmethod
    def _will_be_suspended(inst: Instance) -> bool:
        suspended = inst.suspended
        for _, event in inst.inbox:
            kind = event.WhichOneof("eventType")
            if kind == "executionSuspended":
                suspended = True
            elif kind == "executionResumed":
                suspended = False
        return suspended

    async def terminate(
        self,
        instance_id: str,
        *,
        output: str | None = None,
        recursive: bool = True,
        wait: bool = True,
    ) -> None:
        check_instance_id(instance_id)
        inst = self._active_or_raise(instance_id, "failed to submit termination request: ")
        if inst is None:
            return
        if output is not None:
            # Recorded twice (executionTerminated and executionCompleted). Without an output a
            # termination is always taken, however large the instance already is.
            size = payload.instance_bytes(inst) + 2 * text_size(output)
            if not payload.fits(size):
                raise PayloadTooLarge(
                    f"the termination output would make workflow '{instance_id}' {describe(size)}"
                )
        await self.turns.terminate(inst, output, recursive)
        if wait:
            await self.state.wait_for_instance(instance_id, until="completion")

    async def purge(self, instance_id: str, *, recursive: bool = True) -> int:
        check_instance_id(instance_id)
        await self.state.settled(instance_id)
        order: list[str] = []
        self._collect_purge(instance_id, recursive, order, root=True)
        await self.state.write([sql.delete_instances(order)])
        self.state.store.reclaim()
        return len(order)

    def _collect_purge(
        self, instance_id: str, recursive: bool, order: list[str], root: bool
    ) -> None:
        inst = self.state.instances.get(instance_id)
        if inst is not None:
            if inst.status == STALLED:
                raise Stalled(f"workflow '{instance_id}' is stalled")
            raise NotCompleted(
                "failed to purge workflow state: orchestration has not yet completed"
            )
        history = self.state.stored_history(instance_id)
        if history is None:
            if root:
                raise InstanceNotFound(
                    instance_id, "failed to purge workflow state: failed to fetch workflow state: "
                )
            return
        if recursive:
            for child in orch.children_of(history):
                if child not in order:
                    self._collect_purge(child, recursive, order, root=False)
        order.append(instance_id)

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
        """Start a new instance from a terminal one's history up to ``event_id`` (daprd's rerun).

        The new history keeps everything before the target event; the target and every
        activity, timer or child scheduled before it and never resolved run again.
        """
        if not source_id:
            raise InvalidArgument("source instance id is required")
        new_id = new_instance_id or uuid.uuid4().hex
        check_instance_id(new_id)
        if new_id == source_id:
            raise InvalidArgument("the new instance id must differ from the source instance id")
        source = self.state.get_instance(source_id)
        if source is None:
            raise NotFound(f"workflow instance does not exist with ID '{source_id}'")
        if not source.is_terminal:
            raise InvalidArgument(f"'{source_id}' is not in a terminal state")
        if source.parent_instance_id:
            raise InvalidArgument(f"'{source_id}': cannot rerun from child-workflows")
        if new_id in self.state.instances or self.state.get_instance(new_id) is not None:
            raise AlreadyExists(f"workflow '{new_id}' has already been created")
        events = generations.rerun_history(
            self.state.get_history(source_id),
            source_id,
            event_id,
            new_id,
            input=input,
            overwrite_input=overwrite_input,
            new_child_instance_id=new_child_instance_id,
        )
        size = payload.events_bytes(events)
        if not payload.fits(size):
            raise PayloadTooLarge(
                f"the rerun's history would make workflow '{new_id}' {describe(size)}"
            )
        return await self._start_rerun(new_id, events)

    async def _start_rerun(self, new_id: str, events: list[pb.HistoryEvent]) -> str:
        now = now_ns()
        execution_id = orch.new_execution_id()
        resolved: set[int] = set()
        for event in events:
            kind = event.WhichOneof("eventType")
            if kind == "executionStarted":
                event.executionStarted.workflowInstance.instanceId = new_id
                event.executionStarted.workflowInstance.executionId.value = execution_id
            elif kind in ("taskCompleted", "taskFailed"):
                resolved.add(getattr(event, kind).taskScheduledId)
            elif kind in ("childWorkflowInstanceCompleted", "childWorkflowInstanceFailed"):
                resolved.add(getattr(event, kind).taskScheduledId)
            elif kind == "timerFired":
                resolved.add(event.timerFired.timerId)
        started = next(e for e in events if e.WhichOneof("eventType") == "executionStarted")
        inst = Instance(
            instance_id=new_id,
            name=started.executionStarted.name,
            execution_id=execution_id,
            status=RUNNING,
            created_ns=now,
            updated_ns=now,
            input=started.executionStarted.input.value
            if started.executionStarted.HasField("input")
            else None,
            history=events,
            patches=orch.recorded_patches(events),
        )
        self.state.instances[new_id] = inst
        statements: list[Statement] = [sql.insert_history(new_id, 0, events)]
        for event in events:
            kind = event.WhichOneof("eventType")
            if event.eventId in resolved:
                continue
            if kind == "taskScheduled":
                task = event.taskScheduled
                request = pb.ActivityRequest(
                    name=task.name,
                    version=task.version if task.HasField("version") else None,
                    input=task.input if task.HasField("input") else None,
                    workflowInstance=pb.WorkflowInstance(
                        instanceId=new_id, executionId=string_value(execution_id)
                    ),
                    taskId=event.eventId,
                    taskExecutionId=task.taskExecutionId,
                )
                inst.activities[event.eventId] = request
                self.state.dispatch.queue_activity(inst, event.eventId)
                statements.append(sql.insert_activities(new_id, execution_id, [request]))
            elif kind == "timerCreated":
                # Due at its own time (at once when that has passed), as daprd re-creates it:
                # the year-9999 sentinel of the SDK's indefinite event wait must never fire.
                fire_ns = event.timerCreated.fireAt.ToNanoseconds()
                inst.timers[event.eventId] = fire_ns
                self.state.timers.add(fire_ns, new_id, execution_id, event.eventId)
                statements.append(
                    sql.insert_timers(new_id, execution_id, [(fire_ns, event.eventId)])
                )
            elif kind == "childWorkflowInstanceCreated":
                child = event.childWorkflowInstanceCreated
                if not child.instanceId.startswith(new_id):
                    child.instanceId = f"{new_id}:{event.eventId:04x}"
                    statements[0] = sql.insert_history(new_id, 0, events)
                view = orch.InstanceView(new_id, execution_id, inst.name, events, False)
                action = pb.WorkflowAction(
                    id=event.eventId,
                    createChildWorkflow=pb.CreateChildWorkflowAction(
                        instanceId=child.instanceId,
                        name=child.name,
                        input=child.input if child.HasField("input") else None,
                    ),
                )
                outcome = orch.TurnOutcome(events=[], status=RUNNING, custom_status=None)
                orch.create_child(view, action, now, outcome)
                for start in outcome.children:
                    statements.extend(self.turns.start_child(inst, start, now))
        statements.append(sql.upsert_instance(inst))
        commit = self.state.write(statements)
        self.state.timers.arm()
        self.state.dispatch.make_ready(inst)
        self.state.dispatch.schedule_pump()
        await commit
        self.state.notify(new_id)
        return new_id

    def _active_or_raise(self, instance_id: str, prefix: str = "") -> Instance | None:
        """The active instance, or None when it is terminal; ``InstanceNotFound`` if unknown."""
        inst = self.state.instances.get(instance_id)
        if inst is not None:
            return None if inst.done else inst
        if self.state.get_instance(instance_id) is None:
            raise InstanceNotFound(instance_id, prefix)
        return None
