"""Turn completion: apply a worker's answer to a workflow turn and commit what it decided.

A turn's outcome (``orchestration.apply_turn``, pure) is committed here: history, the work it
scheduled (activities, timers, children), a terminal state with its parent's notification, a new
generation (continue-as-new) or a stall. Terminating an instance that no worker holds is a turn
the sidecar completes itself (``terminate``), as are recursive terminations of idle children,
and the failure of an instance whose next work item would be too large (``fail_oversized``; a
worker's turn that would make it so fails the instance too: engine/payload.py).
The shape follows durabletask-go's backend (backend/orchestration.go applies a work item's
actions, backend/runtimestate holds the pure state) and daprd's workflow orchestrator (dapr/dapr
pkg/actors/targets/workflow/orchestrator: childwf.go, terminate.go, stalled.go).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine import generations, payload
from sidecar.engine import orchestration as orch
from sidecar.engine.instance import Instance, now_ns, string_value
from sidecar.engine.state import EngineState
from sidecar.engine.status import PENDING, RUNNING, STALLED, SUSPENDED, TERMINATED
from sidecar.errors import PayloadTooLarge
from sidecar.limits import describe
from sidecar.storage import sql
from sidecar.storage.sql import Statement

log = logging.getLogger("sidecar.engine")


class TurnCompletion:
    """Completes turns, a worker's or the sidecar's own (termination), on ``state``."""

    def __init__(self, state: EngineState) -> None:
        self.state = state

    async def complete(self, response: pb.WorkflowResponse) -> None:
        """Apply a worker's answer to a dispatched turn (CompleteOrchestratorTask)."""
        self.state.dispatch.check_token(response.completionToken)
        inst = self.state.instances.get(response.instanceId)
        turn = self.state.dispatch.turn_of(response.instanceId)
        if inst is None or turn is None:
            return  # nothing in flight: a late or duplicate answer (daprd ignores it)
        if response.completionToken and response.completionToken != turn.token:
            return  # an answer to an earlier dispatch of this instance
        view = orch.InstanceView(
            inst.instance_id,
            inst.execution_id,
            inst.name,
            inst.history,
            inst.suspended,
            inst.patches,
            inst.version,
        )
        now = now_ns()
        dispatched = [e for _, e in turn.dispatched]
        outcome = orch.apply_turn(view, turn.started, dispatched, response, now)
        refusal = None
        if outcome.stall is None:
            size = payload.turn_bytes(inst, dispatched, outcome)
            if not payload.fits(size):
                # The instance fails instead, as dapr.ext.workflow's worker fails it when its
                # answer cannot be sent at all (the worker's own fallback is then stale).
                refusal = PayloadTooLarge(
                    f"this turn's actions and custom status would make workflow "
                    f"'{inst.instance_id}' {describe(size)}"
                )
                started = outcome.events[: 1 + len(dispatched)]
                outcome = payload.failed_outcome(started, str(refusal), now, inst.custom_status)
        ended = outcome.continued_as_new is not None or outcome.is_terminal
        self.state.dispatch.land_turn(inst, turn, keep_warm=not ended and outcome.stall is None)
        consumed = [rid for rid, _ in turn.dispatched]
        if outcome.stall is not None:
            await self._commit_stall(inst, outcome.stall)
        elif outcome.continued_as_new is not None:
            await self._commit_continue_as_new(
                inst, outcome.continued_as_new, consumed, now, outcome.status == SUSPENDED
            )
        else:
            await self._commit_outcome(inst, outcome, consumed)
        if refusal is not None:
            raise refusal  # RESOURCE_EXHAUSTED, once the failure is on disk

    async def fail_oversized(self, inst: Instance, size: int) -> None:
        """End ``inst`` FAILED without a worker: its next work item would be ``size`` bytes, more
        than a worker can be sent (a child's result or an activity's failure that still did not
        fit, a history written before these limits). The events that would not fit are
        dropped with the inbox, as a termination drops them."""
        if inst.done or self.state.instances.get(inst.instance_id) is not inst:
            return
        message = f"the next work item of workflow '{inst.instance_id}' would be {describe(size)}"
        log.warning("workflow %s failed: %s", inst.instance_id, message)
        now = now_ns()
        events = [orch.new_event(now, workflowStarted=pb.WorkflowStartedEvent())]
        if not inst.history and inst.inbox:
            first = inst.inbox[0][1]
            if first.WhichOneof("eventType") == "executionStarted":
                events.append(first)
        outcome = payload.failed_outcome(events, message, now, inst.custom_status)
        await self._commit_outcome(inst, outcome, consumed=[])

    async def _commit_outcome(
        self, inst: Instance, outcome: orch.TurnOutcome, consumed: list[int]
    ) -> None:
        iid = inst.instance_id
        now = now_ns()
        status_before = inst.status
        first_seq = len(inst.history)
        inst.history.extend(outcome.events)
        if outcome.version is not None:
            orch.merge_patches(inst.patches, outcome.version.patches)
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
        for observer in self.state.observers:  # may stamp trace context on what is persisted
            observer.turn_applying(inst, outcome, first_seq)
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
                self.state.dispatch.queue_activity(inst, request.taskId)
            if outcome.activities:
                statements.append(sql.insert_activities(iid, inst.execution_id, outcome.activities))
            for fire_ns, fired in outcome.timers:
                timer_id = fired.timerFired.timerId
                inst.timers[timer_id] = fire_ns
                self.state.timers.add(fire_ns, iid, inst.execution_id, timer_id)
            if outcome.timers:
                timers = [(ns, f.timerFired.timerId) for ns, f in outcome.timers]
                statements.append(sql.insert_timers(iid, inst.execution_id, timers))
                self.state.timers.arm()
            for child in outcome.children:
                statements.extend(self.start_child(inst, child, now))
        statements.append(sql.update_after_turn(inst))
        self.state.dispatch.make_ready(inst)
        # A client may be waiting for a change of status (started, suspended, ended): that
        # commit goes out at once; a step in the middle of a running workflow may wait for
        # the next one, when a worker is about to send it.
        hold = inst.status == status_before and self.state.step_due(inst)
        commit = self.state.write(statements, defer_for=iid if hold else None)
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
        current = self.state.instances.get(iid) is inst  # not replaced by a new start of the ID
        if inst.done:
            self.state.dispatch.forget(iid)
            if current:
                del self.state.instances[iid]
            if outcome.terminate_recursively:
                await self.terminate_children(inst, outcome.output)
                # While that ran, the ID may have been started again or purged: read it anew.
                current = False
        # Otherwise the committed state straight from memory: once evicted, reading it back
        # would be a database read on the event loop for every finished workflow.
        self.state.notify(iid, inst.info() if current else None)

    def _finish(self, inst: Instance, now: int) -> list[Statement]:
        """A terminal turn: tell the parent, drop pending work, keep the record on disk."""
        iid = inst.instance_id
        statements = sql.delete_pending_work(iid)
        inst.inbox.clear()
        inst.activities.clear()
        self.state.timers.forget(inst)
        parent = inst.parent
        if parent is not None:
            owner = self.state.instances.get(parent.workflowInstance.instanceId)
            if (
                owner is not None
                and not owner.done
                and owner.execution_id == parent.workflowInstance.executionId.value
            ):
                event = orch.child_result_event(parent, inst.status, inst.output, inst.failure, now)
                statements.append(self.state.inbox_row(owner, event))
                self.state.dispatch.make_ready(owner)
        return statements

    async def _commit_stall(self, inst: Instance, stall: pb.ExecutionStalledEvent) -> None:
        """The worker cannot run this instance (its version is not registered, a recorded patch
        is gone): record the stall in history and stop dispatching it until a worker connects
        or the sidecar restarts, as daprd does. The events the turn carried stay in the inbox
        for that next attempt."""
        log.warning("workflow %s stalled: %s", inst.instance_id, stall.description)
        now = now_ns()
        statements: list[sql.Statement] = []
        last = inst.history[-1] if inst.history else None
        if last is None or last.executionStalled != stall:  # daprd records a stall once
            event = orch.new_event(now, executionStalled=stall)
            statements.append(sql.insert_history(inst.instance_id, len(inst.history), [event]))
            inst.history.append(event)
        inst.stalled = stall
        inst.status = STALLED
        inst.updated_ns = now
        statements.append(sql.update_after_turn(inst))
        await self.state.write(statements)
        self.state.notify(inst.instance_id)
        # A termination that arrived during the stalled turn must not wait for a restart.
        for _, pending in inst.inbox:
            if pending.WhichOneof("eventType") == "executionTerminated":
                reason = pending.executionTerminated
                output = reason.input.value if reason.HasField("input") else None
                await self.terminate(inst, output, reason.recurse)
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
            inst.patches,
            inst.version,
        )
        execution_id, first = generations.continue_as_new_events(view, inst.parent, done, now)
        for observer in self.state.observers:
            observer.continuing_as_new(inst, first[0])
        remaining = inst.inbox[len(consumed) :]
        iid = inst.instance_id
        statements = sql.delete_generation(iid)
        inst.execution_id = execution_id
        inst.history = []
        inst.patches = []
        inst.inbox = []
        inst.activities.clear()
        self.state.timers.forget(inst)
        inst.status = RUNNING
        inst.suspended = False
        inst.created_ns = inst.updated_ns = now
        started = first[0].executionStarted
        inst.input = started.input.value if started.HasField("input") else None
        inst.custom_status = None
        self.state.dispatch.forget(iid)
        for event in generations.next_generation_inbox(first, suspended, [e for _, e in remaining]):
            statements.append(self.state.inbox_row(inst, event))
        statements.append(sql.upsert_instance(inst))
        commit = self.state.write(statements)
        self.state.dispatch.make_ready(inst)
        await commit

    # -- termination ------------------------------------------------------------------------------

    async def terminate(self, inst: Instance, output: str | None, recursive: bool) -> None:
        """End ``inst`` as TERMINATED: at once when no worker holds a turn of it, else with the
        next turn (the SDK answers an executionTerminated with completeWorkflow(TERMINATED))."""
        now = now_ns()
        terminated = orch.new_event(
            now,
            executionTerminated=pb.ExecutionTerminatedEvent(
                input=string_value(output), recurse=recursive
            ),
        )
        if self.state.dispatch.turn_of(inst.instance_id) is not None:
            # A worker is busy with this instance: the termination goes in the next turn.
            commit = self.state.write([self.state.inbox_row(inst, terminated)])
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

    # -- children ---------------------------------------------------------------------------------

    def _active_children(self, inst: Instance) -> list[Instance]:
        children = (self.state.instances.get(cid) for cid in orch.children_of(inst.history))
        return [c for c in children if c is not None and not c.done]

    def _cascade_termination(self, inst: Instance, output: str | None, now: int) -> list[Statement]:
        """A recursive termination reaches the children in the parent's own transaction: a
        crash right after it still finds an executionTerminated in each child's inbox."""
        statements = []
        for child in self._active_children(inst):
            terminated = pb.ExecutionTerminatedEvent(input=string_value(output), recurse=True)
            statements.append(
                self.state.inbox_row(child, orch.new_event(now, executionTerminated=terminated))
            )
            self.state.dispatch.make_ready(child)
        return statements

    async def terminate_children(self, inst: Instance, output: str | None) -> None:
        """Children idle in the sidecar are terminated here at once; the others get the
        executionTerminated already in their inbox with their next turn."""
        for child in self._active_children(inst):
            # Checked again for each: a child may end, or start a turn, during an earlier
            # child's commit, and must not get a second terminal turn.
            if (
                self.state.dispatch.turn_of(child.instance_id) is None
                and not child.done
                and self.state.instances.get(child.instance_id) is child
            ):
                await self.terminate(child, output, recursive=True)

    def start_child(self, parent: Instance, child: orch.ChildStart, now: int) -> list[Statement]:
        """Create a child a turn asked for (or tell the parent its ID is taken); returns the rows."""
        existing = self.state.instances.get(child.instance_id)
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
            return [self.state.inbox_row(parent, event)]
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
        self.state.instances[child.instance_id] = inst
        statements = [sql.delete_instances([child.instance_id])]
        statements.append(self.state.inbox_row(inst, child.started))
        statements.append(sql.upsert_instance(inst))
        self.state.dispatch.make_ready(inst)
        return statements
