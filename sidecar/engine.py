"""The workflow engine: runtime state of active instances, dispatch, timers and waiters.

Everything here runs on the sidecar's one asyncio event loop, so in-memory state needs no
locks. Durability follows one rule: memory is changed first (synchronously, so concurrent RPCs
see a consistent picture), the matching rows are queued on the store's single writer, and an
RPC that changed state answers only after that write committed. New work may be dispatched
before the commit because the writer is FIFO: whatever a worker reports back about that work is
committed in a later transaction than the state it depends on, so a crash can lose both, never
one without the other (and activities are at-least-once anyway).

Only active (non-terminal) instances live in memory; a terminal instance is evicted once its
final state has committed, and reads of it go to SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from dapr.ext.workflow._durabletask.internal import protos as pb

from . import orchestration as orch
from .api import PENDING, RUNNING, STALLED, SUSPENDED, TERMINATED, InstanceInfo
from .dispatch import Dispatcher, WorkStream
from .errors import (
    AlreadyExists,
    InstanceNotFound,
    InvalidArgument,
    NotCompleted,
    NotFound,
    Stalled,
)
from .instance import Instance, check_instance_id, now_ns, string_value
from .storage import sql
from .storage.sql import Statement
from .storage.store import Store
from .timers import SCHEDULED_START, Entry, TimerQueue

log = logging.getLogger("sidecar.engine")


class Engine:
    """See the module docstring. All public coroutines run on the sidecar loop."""

    def __init__(self, store: Store, *, max_outstanding_per_stream: int = 2000) -> None:
        self.store = store
        self._instances: dict[str, Instance] = {}
        self._dispatch = Dispatcher(self._instances, max_outstanding_per_stream)
        self._timers = TimerQueue(self._timers_due)
        self._waiters: dict[
            str, list[tuple[Callable[[InstanceInfo], bool], asyncio.Future[InstanceInfo]]]
        ] = {}
        self._next_inbox_id = 1

    # -- start-up and shutdown -------------------------------------------------------------------

    def recover(self) -> None:
        """Load every active instance and its pending work from the database (start-up)."""
        found = self.store.read(sql.load_active)
        for inst in found.instances.values():
            inst.action_ids = orch.scheduled_ids(inst.history)
        self._instances.update(found.instances)
        self._next_inbox_id = found.next_inbox_id
        for fire_ns, iid, execution_id, timer_id in found.timers:
            self._timers.push(fire_ns, iid, execution_id, timer_id)
        for inst in self._instances.values():
            if inst.scheduled_start_ns is not None:
                self._timers.push(
                    inst.scheduled_start_ns, inst.instance_id, inst.execution_id, SCHEDULED_START
                )
            self._dispatch.make_ready(inst)
        for iid, _, task_id in found.activities:
            self._dispatch.queue_activity(self._instances[iid], task_id)
        if self._instances:
            log.info(
                "recovered %d active workflow instance(s), %d pending activities, %d timers",
                len(self._instances),
                len(found.activities),
                len(found.timers),
            )
        self._timers.arm()

    def close(self) -> None:
        """Stop dispatching and end every work stream and waiter."""
        self._dispatch.close()
        self._timers.stop()
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.cancel()

    # -- persistence helper ----------------------------------------------------------------------

    def _write(
        self, statements: list[Statement], *, defer_for: str | None = None
    ) -> asyncio.Future[Any]:
        """Queue ``statements`` as one op. ``defer_for`` (an instance id): only a worker's
        completion call waits for this commit, so the store may hold it briefly to share an
        fsync with that instance's next step (``Store.write``); what a client waits for is
        never deferred."""

        return self.store.write(sql.apply(statements), defer_key=defer_for)

    def _step_due(self, inst: Instance) -> bool:
        """Whether a worker is about to send a step of ``inst`` (a turn queued or running, an
        activity pending). Only then is a write of it held for company: a workflow that waits
        for an event, a timer or a child has its step committed at once, and so does everything
        once the sidecar is shutting down."""
        if self._dispatch.closing:
            return False
        return inst.queued or inst.turn is not None or bool(inst.activities)

    def _new_inbox_row(self, inst: Instance, event: pb.HistoryEvent) -> Statement:
        rid = self._next_inbox_id
        self._next_inbox_id += 1
        inst.inbox.append((rid, event))
        return sql.insert_inbox(rid, inst.instance_id, event)

    # -- reads -----------------------------------------------------------------------------------

    def get_instance(self, instance_id: str) -> InstanceInfo | None:
        inst = self._instances.get(instance_id)
        if inst is not None:
            return inst.info()
        return self.store.read(lambda conn: sql.read_info(conn, instance_id))

    def get_history(self, instance_id: str) -> list[pb.HistoryEvent]:
        """History of the current generation. Raises ``NotFound``.

        A running instance's comes from memory: a turn's events show here once the turn is
        applied, and are on disk once that step's commit is (held steps: ``Store.write``).
        """
        check_instance_id(instance_id)
        inst = self._instances.get(instance_id)
        if inst is not None:
            return list(inst.history)
        events = self._stored_history(instance_id)
        if events is None:
            raise NotFound(f"workflow instance '{instance_id}' not found")
        return events

    def _stored_history(self, instance_id: str) -> list[pb.HistoryEvent] | None:
        return self.store.read(lambda conn: sql.read_history(conn, instance_id))

    def list_instance_ids(
        self, *, page_size: int | None = None, continuation_token: str | None = None
    ) -> tuple[list[str], str | None]:
        after = continuation_token or ""
        if not page_size:
            return self.store.read(lambda conn: sql.read_ids(conn, after, -1)), None
        ids = self.store.read(lambda conn: sql.read_ids(conn, after, page_size + 1))
        if len(ids) > page_size:
            return ids[:page_size], ids[page_size - 1]
        return ids, None

    async def wait_for_instance(
        self, instance_id: str, *, until: str = "completion"
    ) -> InstanceInfo:
        """Park until the instance has started (``until="start"``) or is terminal.

        A missing instance parks until it is created, as daprd does; the caller's deadline
        ends the wait.
        """
        check_instance_id(instance_id)
        if until == "start":
            return await self._wait(instance_id, lambda i: i.status != PENDING)
        return await self._wait(instance_id, lambda i: i.is_terminal)

    async def _wait(
        self, instance_id: str, predicate: Callable[[InstanceInfo], bool]
    ) -> InstanceInfo:
        await self._settled(instance_id)
        info = self.get_instance(instance_id)
        if info is not None and predicate(info):
            return info
        fut: asyncio.Future[InstanceInfo] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(instance_id, []).append((predicate, fut))
        try:
            return await fut
        finally:
            waiters = self._waiters.get(instance_id)
            if waiters is not None:
                waiters[:] = [w for w in waiters if w[1] is not fut]
                if not waiters:
                    del self._waiters[instance_id]

    def _notify(self, instance_id: str, info: InstanceInfo | None = None) -> None:
        waiters = self._waiters.get(instance_id)
        if not waiters:
            return
        if info is None:
            info = self.get_instance(instance_id)
        if info is None:
            return
        for predicate, fut in waiters:
            if not fut.done() and predicate(info):
                fut.set_result(info)

    # -- client operations -----------------------------------------------------------------------

    async def start_instance(
        self,
        *,
        instance_id: str,
        name: str,
        input: str | None = None,
        scheduled_start: datetime | None = None,
        version: str | None = None,
        wait_for_start: bool = True,
    ) -> str:
        check_instance_id(instance_id)
        if not name:
            raise InvalidArgument("a workflow name is required")
        existing = self._instances.get(instance_id)
        if existing is not None and not existing.done:
            raise AlreadyExists(f"an active workflow with ID '{instance_id}' already exists")
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
        self._instances[instance_id] = inst
        statements = self._purge_statements([instance_id])  # a terminal ID is reused: wipe it
        statements.append(self._new_inbox_row(inst, orch.new_event(now, executionStarted=started)))
        statements.append(sql.upsert_instance(inst))
        commit = self._write(statements)
        if scheduled_ns is not None:
            self._timers.push(scheduled_ns, instance_id, execution_id, -1)
            self._timers.arm()
        else:
            self._dispatch.make_ready(inst)
        await commit
        self._notify(instance_id)
        if wait_for_start and scheduled_ns is None:
            await self.wait_for_instance(instance_id, until="start")
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
        commit = self._write([self._new_inbox_row(inst, event)])
        self._dispatch.make_ready(inst)
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
                await self._wait(instance_id, lambda i: i.status == SUSPENDED or i.is_terminal)
            return
        event = orch.new_event(
            now_ns(),
            executionSuspended=pb.ExecutionSuspendedEvent(input=string_value(reason or None)),
        )
        commit = self._write([self._new_inbox_row(inst, event)])
        self._dispatch.make_ready(inst)
        await commit
        if wait:
            await self._wait(instance_id, lambda i: i.status == SUSPENDED or i.is_terminal)

    async def resume(self, instance_id: str, reason: str | None = None, wait: bool = True) -> None:
        """Resume a suspended instance. Resuming one that is not suspended (and has no suspend
        on its way) does nothing: the SDK would fail the workflow on an unexpected
        executionResumed event (protocol sheet §1.7), which nobody asking to resume wants."""
        check_instance_id(instance_id)
        inst = self._active_or_raise(instance_id)
        if inst is None or not self._will_be_suspended(inst):
            return
        event = orch.new_event(
            now_ns(), executionResumed=pb.ExecutionResumedEvent(input=string_value(reason or None))
        )
        commit = self._write([self._new_inbox_row(inst, event)])
        self._dispatch.make_ready(inst)
        await commit
        if wait:
            await self._wait(instance_id, lambda i: i.status != SUSPENDED)

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
        await self._terminate(inst, output, recursive)
        if wait:
            await self.wait_for_instance(instance_id, until="completion")

    async def _terminate(self, inst: Instance, output: str | None, recursive: bool) -> None:
        now = now_ns()
        terminated = orch.new_event(
            now,
            executionTerminated=pb.ExecutionTerminatedEvent(
                input=string_value(output), recurse=recursive
            ),
        )
        if inst.turn is not None:
            # A worker is busy with this instance: the termination goes in the next turn.
            commit = self._write([self._new_inbox_row(inst, terminated)])
            await commit
            return
        # Nothing in flight: terminate here, without a worker round trip. The SDK would only
        # answer completeWorkflow(TERMINATED, output), so the outcome is the same.
        events = [orch.new_event(now, workflowStarted=pb.WorkflowStartedEvent())]
        if not inst.history and inst.inbox:
            first = inst.inbox[0][1]
            if first.WhichOneof("eventType") == "executionStarted":
                events.append(first)
        events.append(terminated)
        events.append(
            orch.new_event(
                now,
                executionCompleted=pb.ExecutionCompletedEvent(
                    workflowStatus=TERMINATED, result=string_value(output)
                ),
            )
        )
        outcome = orch.TurnOutcome(
            events=events,
            status=TERMINATED,
            custom_status=inst.custom_status,
            output=output,
            terminate_recursively=recursive,
        )
        await self._commit_outcome(inst, outcome, consumed=[])

    async def _settled(self, instance_id: str) -> None:
        """Wait until an instance's final state, already visible in memory, is on disk: a
        caller told "completed" may act on it at once (purge, reuse the id, report it)."""
        inst = self._instances.get(instance_id)
        if inst is not None and inst.final_commit is not None:
            await asyncio.shield(inst.final_commit)

    async def purge(self, instance_id: str, *, recursive: bool = True) -> int:
        check_instance_id(instance_id)
        await self._settled(instance_id)
        order: list[str] = []
        self._collect_purge(instance_id, recursive, order, root=True)
        await self._write(self._purge_statements(order))
        self.store.reclaim()
        return len(order)

    def _collect_purge(
        self, instance_id: str, recursive: bool, order: list[str], root: bool
    ) -> None:
        inst = self._instances.get(instance_id)
        if inst is not None:
            if inst.status == STALLED:
                raise Stalled(f"workflow '{instance_id}' is stalled")
            raise NotCompleted(
                f"failed to purge workflow state: orchestration has not yet completed: "
                f"'{instance_id}'"
            )
        history = self._stored_history(instance_id)
        if history is None:
            if root:
                raise InstanceNotFound(instance_id, "failed to purge workflow state: ")
            return
        if recursive:
            for child in orch.children_of(history):
                if child not in order:
                    self._collect_purge(child, recursive, order, root=False)
        order.append(instance_id)

    @staticmethod
    def _purge_statements(instance_ids: list[str]) -> list[Statement]:
        return [sql.delete_instances(instance_ids)]

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
        source = self.get_instance(source_id)
        if source is None:
            raise NotFound(f"workflow instance does not exist with ID '{source_id}'")
        if not source.is_terminal:
            raise InvalidArgument(f"'{source_id}' is not in a terminal state")
        if source.parent_instance_id:
            raise InvalidArgument(f"'{source_id}': cannot rerun from child-workflows")
        if new_id in self._instances or self.get_instance(new_id) is not None:
            raise AlreadyExists(f"workflow '{new_id}' has already been created")
        events = orch.rerun_history(
            self.get_history(source_id),
            source_id,
            event_id,
            new_id,
            input=input,
            overwrite_input=overwrite_input,
            new_child_instance_id=new_child_instance_id,
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
            action_ids=orch.scheduled_ids(events),
        )
        self._instances[new_id] = inst
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
                self._dispatch.queue_activity(inst, event.eventId)
                statements.append(sql.insert_activities(new_id, execution_id, [request]))
            elif kind == "timerCreated":
                fired = orch.new_event(
                    now,
                    timerFired=pb.TimerFiredEvent(
                        fireAt=event.timerCreated.fireAt, timerId=event.eventId
                    ),
                )
                statements.append(self._new_inbox_row(inst, fired))
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
                    statements.extend(self._start_child(inst, start, now))
        statements.append(sql.upsert_instance(inst))
        commit = self._write(statements)
        self._dispatch.make_ready(inst)
        self._dispatch.schedule_pump()
        await commit
        self._notify(new_id)
        return new_id

    def _active_or_raise(self, instance_id: str, prefix: str = "") -> Instance | None:
        """The active instance, or None when it is terminal; ``InstanceNotFound`` if unknown."""
        inst = self._instances.get(instance_id)
        if inst is not None:
            return None if inst.done else inst
        if self.get_instance(instance_id) is None:
            raise InstanceNotFound(instance_id, prefix)
        return None

    # -- work streams and dispatch ---------------------------------------------------------------

    @property
    def connected_workers(self) -> int:
        """Open GetWorkItems streams (daprd's metadata calls them connected workers)."""
        return len(self._dispatch.streams)

    def open_stream(self, capabilities: Iterable[int]) -> WorkStream:
        return self._dispatch.open_stream(capabilities)

    def close_stream(self, stream: WorkStream) -> None:
        self._dispatch.close_stream(stream)

    # -- completions -----------------------------------------------------------------------------

    async def complete_activity(self, response: pb.ActivityResponse) -> None:
        """Record an activity's result. A stale or duplicate result is ignored (daprd: OK)."""
        flight = self._dispatch.land_activity(response)
        if flight is None:
            return
        inst = self._instances.get(flight.instance_id)
        if inst is None or inst.done or inst.execution_id != flight.execution_id:
            return
        request = inst.activities.pop(flight.task_id, None)
        if request is None:
            return
        event = orch.activity_result_event(request, response, now_ns())
        statements = [
            sql.delete_activity(inst.instance_id, flight.task_id),
            self._new_inbox_row(inst, event),
        ]
        self._dispatch.make_ready(inst)
        # Each held result keeps one of the worker's activity threads waiting for its answer,
        # so a result is held only when it was the instance's last pending activity: a chain's
        # step, not a fan-out's, whose other activities need those threads.
        hold = not inst.activities and self._step_due(inst)
        await self._write(statements, defer_for=inst.instance_id if hold else None)

    async def complete_turn(self, response: pb.WorkflowResponse) -> None:
        """Apply a worker's answer to a dispatched turn (CompleteOrchestratorTask)."""
        self._dispatch.check_token(response.completionToken)
        inst = self._instances.get(response.instanceId)
        if inst is None or inst.turn is None:
            return  # nothing in flight: a late or duplicate answer (daprd ignores it)
        turn = inst.turn
        if response.completionToken and response.completionToken != turn.token:
            return  # an answer to an earlier dispatch of this instance
        view = orch.InstanceView(
            inst.instance_id,
            inst.execution_id,
            inst.name,
            inst.history,
            inst.suspended,
            inst.action_ids,
        )
        now = now_ns()
        outcome = orch.apply_turn(
            view, turn.started, [e for _, e in turn.dispatched], response, now
        )
        ended = outcome.continued_as_new is not None or outcome.is_terminal
        self._dispatch.land_turn(inst, turn, keep_warm=not ended and outcome.stall is None)
        consumed = [rid for rid, _ in turn.dispatched]
        if outcome.stall is not None:
            await self._commit_stall(inst, outcome.stall)
        elif outcome.continued_as_new is not None:
            await self._commit_continue_as_new(
                inst, outcome.continued_as_new, consumed, now, outcome.status == SUSPENDED
            )
        else:
            await self._commit_outcome(inst, outcome, consumed)

    async def _commit_stall(self, inst: Instance, stall: pb.ExecutionStalledEvent) -> None:
        """The worker cannot run this instance (e.g. its version is not registered): record
        the stall in history and stop dispatching it until the sidecar restarts, as daprd does.
        The events the turn carried stay in the inbox for that next attempt."""
        log.warning("workflow %s stalled: %s", inst.instance_id, stall.description)
        now = now_ns()
        event = orch.new_event(now, executionStalled=stall)
        seq = len(inst.history)
        inst.history.append(event)
        inst.stalled = stall
        inst.status = STALLED
        inst.updated_ns = now
        await self._write(
            [
                sql.insert_history(inst.instance_id, seq, [event]),
                sql.update_after_turn(inst),
            ]
        )
        self._notify(inst.instance_id)
        # A termination that arrived during the stalled turn must not wait for a restart.
        for _, pending in inst.inbox:
            if pending.WhichOneof("eventType") == "executionTerminated":
                reason = pending.executionTerminated
                output = reason.input.value if reason.HasField("input") else None
                await self._terminate(inst, output, reason.recurse)
                break

    async def _commit_continue_as_new(
        self,
        inst: Instance,
        done: pb.CompleteWorkflowAction,
        consumed: list[int],
        now: int,
        suspended: bool,
    ) -> None:
        view = orch.InstanceView(
            inst.instance_id,
            inst.execution_id,
            inst.name,
            inst.history,
            inst.suspended,
            inst.action_ids,
        )
        execution_id, first = orch.continue_as_new_events(view, inst.parent, done, now)
        remaining = inst.inbox[len(consumed) :]
        iid = inst.instance_id
        statements = sql.delete_generation(iid)
        inst.execution_id = execution_id
        inst.history = []
        inst.action_ids = set()
        inst.inbox = []
        inst.activities.clear()
        self._forget_timers(inst)
        inst.status = RUNNING
        inst.suspended = False
        inst.created_ns = inst.updated_ns = now
        started = first[0].executionStarted
        inst.input = started.input.value if started.HasField("input") else None
        inst.custom_status = None
        self._dispatch.forget(iid)
        for event in orch.next_generation_inbox(first, suspended, [e for _, e in remaining]):
            statements.append(self._new_inbox_row(inst, event))
        statements.append(sql.upsert_instance(inst))
        commit = self._write(statements)
        self._dispatch.make_ready(inst)
        await commit

    async def _commit_outcome(
        self, inst: Instance, outcome: orch.TurnOutcome, consumed: list[int]
    ) -> None:
        iid = inst.instance_id
        now = now_ns()
        status_before = inst.status
        first_seq = len(inst.history)
        inst.history.extend(outcome.events)
        inst.action_ids |= orch.scheduled_ids(outcome.events)
        inst.inbox = inst.inbox[len(consumed) :]
        inst.updated_ns = now
        inst.custom_status = outcome.custom_status
        inst.stalled = None
        if outcome.version is not None and outcome.version.name and inst.version is None:
            inst.version = outcome.version.name
        for event in outcome.events:
            kind = event.WhichOneof("eventType")
            if kind == "executionSuspended":
                inst.suspended = True
            elif kind == "executionResumed":
                inst.suspended = False
        inst.status = outcome.status
        statements = [sql.insert_history(iid, first_seq, outcome.events)]
        if consumed:
            statements.append(sql.delete_inbox_rows(consumed))
        if outcome.is_terminal:
            inst.output = outcome.output
            inst.failure = outcome.failure
            inst.done = True
            statements.extend(self._finish(inst, now))
            if outcome.terminate_recursively:
                statements.extend(self._cascade_termination(inst, outcome.output, now))
        else:
            for request in outcome.activities:
                inst.activities[request.taskId] = request
                self._dispatch.queue_activity(inst, request.taskId)
            if outcome.activities:
                statements.append(sql.insert_activities(iid, inst.execution_id, outcome.activities))
            for fire_ns, fired in outcome.timers:
                timer_id = fired.timerFired.timerId
                inst.timers[timer_id] = fire_ns
                self._timers.push(fire_ns, iid, inst.execution_id, timer_id)
            if outcome.timers:
                timers = [(ns, f.timerFired.timerId) for ns, f in outcome.timers]
                statements.append(sql.insert_timers(iid, inst.execution_id, timers))
                self._timers.arm()
            for child in outcome.children:
                statements.extend(self._start_child(inst, child, now))
        statements.append(sql.update_after_turn(inst))
        self._dispatch.make_ready(inst)
        # A client may be waiting for a change of status (started, suspended, ended): that
        # commit goes out at once; a step in the middle of a running workflow may wait for
        # the next one, when a worker is about to send it.
        hold = inst.status == status_before and self._step_due(inst)
        commit = self._write(statements, defer_for=iid if hold else None)
        if inst.done:
            inst.final_commit = commit
        # What follows the commit must happen even if the RPC that brought this turn is
        # cancelled meanwhile (its worker was killed, its deadline passed): waiters wait for
        # the notification, children for their termination.
        await asyncio.shield(asyncio.ensure_future(self._after_commit(inst, outcome, commit)))

    async def _after_commit(
        self, inst: Instance, outcome: orch.TurnOutcome, commit: asyncio.Future[Any]
    ) -> None:
        await commit
        iid = inst.instance_id
        if inst.done and commit is not inst.final_commit:
            # A later turn has already ended the instance in memory, but only this earlier
            # turn is on disk: the final turn's own commit evicts it and tells the waiters.
            return
        current = self._instances.get(iid) is inst  # not replaced by a new start of the ID
        if inst.done:
            self._dispatch.forget(iid)
            if current:
                del self._instances[iid]
            if outcome.terminate_recursively:
                await self._terminate_children(inst, outcome.output)
                # While that ran, the ID may have been started again or purged: read it anew.
                current = False
        # Otherwise the committed state straight from memory: once evicted, reading it back
        # would be a database read on the event loop for every finished workflow.
        self._notify(iid, inst.info() if current else None)

    def _finish(self, inst: Instance, now: int) -> list[Statement]:
        """A terminal turn: tell the parent, drop pending work, keep the record on disk."""
        iid = inst.instance_id
        statements = sql.delete_pending_work(iid)
        inst.inbox.clear()
        inst.activities.clear()
        self._forget_timers(inst)
        parent = inst.parent
        if parent is not None:
            owner = self._instances.get(parent.workflowInstance.instanceId)
            if (
                owner is not None
                and not owner.done
                and owner.execution_id == parent.workflowInstance.executionId.value
            ):
                event = orch.child_result_event(parent, inst.status, inst.output, inst.failure, now)
                statements.append(self._new_inbox_row(owner, event))
                self._dispatch.make_ready(owner)
        return statements

    def _active_children(self, inst: Instance) -> list[Instance]:
        children = (self._instances.get(cid) for cid in orch.children_of(inst.history))
        return [c for c in children if c is not None and not c.done]

    def _cascade_termination(self, inst: Instance, output: str | None, now: int) -> list[Statement]:
        """A recursive termination reaches the children in the parent's own transaction: a
        crash right after it still finds an executionTerminated in each child's inbox."""
        statements = []
        for child in self._active_children(inst):
            terminated = pb.ExecutionTerminatedEvent(input=string_value(output), recurse=True)
            statements.append(
                self._new_inbox_row(child, orch.new_event(now, executionTerminated=terminated))
            )
            self._dispatch.make_ready(child)
        return statements

    async def _terminate_children(self, inst: Instance, output: str | None) -> None:
        """Children idle in the sidecar are terminated here at once; the others get the
        executionTerminated already in their inbox with their next turn."""
        for child in self._active_children(inst):
            # Checked again for each: a child may end, or start a turn, during an earlier
            # child's commit, and must not get a second terminal turn.
            if (
                child.turn is None
                and not child.done
                and self._instances.get(child.instance_id) is child
            ):
                await self._terminate(child, output, recursive=True)

    def _start_child(self, parent: Instance, child: orch.ChildStart, now: int) -> list[Statement]:
        existing = self._instances.get(child.instance_id)
        if existing is not None and not existing.done:
            p = existing.parent
            if (
                p is not None
                and p.workflowInstance.instanceId == parent.instance_id
                and p.workflowInstance.executionId.value == parent.execution_id
                and p.taskScheduledId == child.task_id
            ):
                return []  # the same child created again by a re-dispatched turn
            failure = pb.TaskFailureDetails(
                errorType="WorkflowInstanceAlreadyExists",
                errorMessage=f"an active workflow with ID '{child.instance_id}' already exists",
            )
            event = orch.new_event(
                now,
                childWorkflowInstanceFailed=pb.ChildWorkflowInstanceFailedEvent(
                    taskScheduledId=child.task_id, failureDetails=failure
                ),
            )
            return [self._new_inbox_row(parent, event)]
        started = child.started.executionStarted
        inst = Instance(
            instance_id=child.instance_id,
            name=started.name,
            execution_id=started.workflowInstance.executionId.value,
            status=PENDING,
            created_ns=now,
            updated_ns=now,
            input=started.input.value if started.HasField("input") else None,
            parent=started.parentInstance,
        )
        self._instances[child.instance_id] = inst
        statements = self._purge_statements([child.instance_id])
        statements.append(self._new_inbox_row(inst, child.started))
        statements.append(sql.upsert_instance(inst))
        self._dispatch.make_ready(inst)
        return statements

    # -- timers ----------------------------------------------------------------------------------

    def _forget_timers(self, inst: Instance) -> None:
        """Drop an instance's pending timers; their heap entries go stale and are compacted away
        in bulk (a sentinel timer of an indefinite wait would otherwise stay until 9999)."""
        stale = len(inst.timers) + (inst.scheduled_start_ns is not None)
        inst.timers.clear()
        self._timers.note_stale(stale, self._timer_is_live)

    def _timer_is_live(self, entry: Entry) -> bool:
        _, _, iid, execution_id, timer_id = entry
        inst = self._instances.get(iid)
        if inst is None or inst.done or inst.execution_id != execution_id:
            return False
        if timer_id == SCHEDULED_START:
            return inst.scheduled_start_ns is not None
        return timer_id in inst.timers

    def _timers_due(self, entries: list[Entry]) -> None:
        """Deliver ``timerFired`` for every due timer still wanted; release due scheduled starts."""
        now = now_ns()
        statements: list[Statement] = []
        fired: set[str] = set()
        for fire_ns, _, iid, execution_id, timer_id in entries:
            inst = self._instances.get(iid)
            if inst is None or inst.done or inst.execution_id != execution_id:
                continue
            if timer_id == SCHEDULED_START:
                if inst.scheduled_start_ns is not None:
                    inst.scheduled_start_ns = None
                    self._dispatch.make_ready(inst)
                continue
            if inst.timers.pop(timer_id, None) is None:
                continue
            fire_at = pb.timestamp_pb2.Timestamp()
            fire_at.FromNanoseconds(fire_ns)
            event = orch.new_event(
                now, timerFired=pb.TimerFiredEvent(fireAt=fire_at, timerId=timer_id)
            )
            statements.append(sql.delete_timer(iid, timer_id))
            statements.append(self._new_inbox_row(inst, event))
            fired.add(iid)
            self._dispatch.make_ready(inst)
        if statements:
            # Nobody waits for this commit: a step of the instance, when it is one instance's
            # (its turn is queued now, so the worker's answer is the next step).
            self._write(statements, defer_for=fired.pop() if len(fired) == 1 else None)


__all__ = ["Engine", "check_instance_id"]
