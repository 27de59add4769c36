"""Continue-as-new meets work still in flight from the previous generation.

Action ids restart at 1 in every generation (the SDK numbers actions per execution), so anything
the old generation left running (an activity, a timer, a child) carries the same ids as the new
generation's tasks. These tests pin that nothing of the old generation leaks into the new one,
and that control events (terminate, suspend) arriving during the continue-as-new turn are kept.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus, when_any

from sidecar import Sidecar
from sidecar.tests.harness import (
    WAIT,
    HandledResults,
    WorkflowApp,
    history_types,
    in_thread,
    inbox_kinds,
    wait_until,
)


class Gate(threading.Event):
    """Holds a worker thread (an activity, a workflow turn) until the test opens it, and says
    when something reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = threading.Event()

    def hold(self) -> None:
        self.reached.set()
        self.wait(WAIT)


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    """Gates opened at teardown whatever happened, so no worker thread is left waiting."""
    made: list[Gate] = []
    yield made
    for gate in made:
        gate.set()


def new_gates(gates: list[Gate], count: int) -> list[Gate]:
    made = [Gate() for _ in range(count)]
    gates.extend(made)
    return made


def test_continue_as_new_old_activity_result_not_given_to_new_task(
    app: WorkflowApp, sidecar: Sidecar, gates: list[Gate]
) -> None:
    """The old generation's activity answers while the new generation's activity, with the same
    task id (1), is still running: the old result must be dropped, not taken as the new one's."""
    old_step_gate, new_step_gate = new_gates(gates, 2)
    handled = HandledResults(sidecar)

    @app.runtime.activity(name="old_step")
    def old_step(ctx, _):
        old_step_gate.hold()
        return "old"

    @app.runtime.activity(name="new_step")
    def new_step(ctx, _):
        new_step_gate.hold()
        return "new"

    @app.runtime.workflow(name="two_generations")
    def two_generations(ctx, generation: int):
        if generation == 0:
            yield when_any([ctx.call_activity(old_step), ctx.wait_for_external_event("go")])
            ctx.continue_as_new(1)
            return None
        return (yield ctx.call_activity(new_step))  # task id 1 again

    client = app.start()
    iid = client.schedule_new_workflow(two_generations, input=0)
    assert old_step_gate.reached.wait(WAIT)
    client.raise_workflow_event(iid, "go")
    assert new_step_gate.reached.wait(WAIT)  # the new generation's task 1 is in flight
    old_step_gate.set()
    assert handled.wait_for('"old"')  # the stale result reached the sidecar
    while_new_runs = client.get_workflow_state(iid)
    new_step_gate.set()
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert while_new_runs is not None
    assert while_new_runs.runtime_status == WorkflowStatus.RUNNING
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == "new"
    assert history_types(client, iid).count("taskCompleted") == 1


def test_continue_as_new_old_timer_does_not_fire_new_timer_early(
    app: WorkflowApp, sidecar: Sidecar, gates: list[Gate]
) -> None:
    (turn_gate,) = new_gates(gates, 1)

    @app.runtime.workflow(name="timer_generations")
    def timer_generations(ctx, generation: int):
        if generation == 0:
            yield when_any(
                [ctx.create_timer(timedelta(seconds=0.5)), ctx.wait_for_external_event("go")]
            )
            if not ctx.is_replaying:
                turn_gate.hold()  # the continue-as-new turn stays in flight
            ctx.continue_as_new(1)
            return None
        before = ctx.current_utc_datetime
        yield ctx.create_timer(timedelta(seconds=2))  # timer id 1 again
        return (ctx.current_utc_datetime - before).total_seconds()

    client = app.start()
    iid = client.schedule_new_workflow(timer_generations, input=0)
    client.raise_workflow_event(iid, "go")
    assert turn_gate.reached.wait(WAIT)
    # The old generation's timer falls due while its continue-as-new turn is in flight.
    assert wait_until(lambda: "timerFired" in inbox_kinds(sidecar, iid))
    turn_gate.set()
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    # On the workflow clock: the new timer fired no earlier than its own due time.
    assert json.loads(state.serialized_output) >= 2.0


def start_held_ticker(app: WorkflowApp, gates: list[Gate]) -> tuple[DaprWorkflowClient, str, Gate]:
    """A workflow that continues as new on every "tick"; returned once its first such turn is
    in flight, held there until the returned gate opens."""
    (turn_gate,) = new_gates(gates, 1)

    @app.runtime.workflow(name="ticker")
    def ticker(ctx, generation: int):
        yield ctx.wait_for_external_event("tick")
        if generation == 0 and not ctx.is_replaying:
            turn_gate.hold()
        ctx.continue_as_new(generation + 1)

    client = app.start()
    iid = client.schedule_new_workflow(ticker, input=0)
    client.raise_workflow_event(iid, "tick")
    assert turn_gate.reached.wait(WAIT)
    return client, iid, turn_gate


def test_terminate_during_continue_as_new_turn_terminates(
    app: WorkflowApp, sidecar: Sidecar, gates: list[Gate]
) -> None:
    client, iid, turn_gate = start_held_ticker(app, gates)
    client.raise_workflow_event(iid, "tick")
    terminating, box = in_thread(lambda: client.terminate_workflow(iid, output="stopped"))
    assert wait_until(lambda: "executionTerminated" in inbox_kinds(sidecar, iid))
    turn_gate.set()
    terminating.join(WAIT)

    assert not terminating.is_alive() and "error" not in box
    state = client.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED
    assert json.loads(state.serialized_output) == "stopped"


def test_suspend_during_continue_as_new_turn_keeps_instance_suspended(
    app: WorkflowApp, sidecar: Sidecar, gates: list[Gate]
) -> None:
    client, iid, turn_gate = start_held_ticker(app, gates)
    suspending, box = in_thread(lambda: client.pause_workflow(iid))
    assert wait_until(lambda: "executionSuspended" in inbox_kinds(sidecar, iid))
    turn_gate.set()
    suspending.join(WAIT)

    assert not suspending.is_alive() and "error" not in box
    state = client.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.SUSPENDED
    assert "executionSuspended" in [e.event_type.value for e in client.get_workflow_history(iid)]
    client.resume_workflow(iid)
    assert client.get_workflow_state(iid).runtime_status == WorkflowStatus.RUNNING


def test_child_of_previous_generation_still_running_is_not_taken_as_new(
    app: WorkflowApp,
) -> None:
    @app.runtime.workflow(name="waiting_child")
    def waiting_child(ctx, n: int):
        yield ctx.wait_for_external_event("release")
        return n

    @app.runtime.workflow(name="child_generations")
    def child_generations(ctx, generation: int):
        if generation == 0:
            child = ctx.call_child_workflow(waiting_child, input=0)
            yield when_any([child, ctx.wait_for_external_event("go")])
            ctx.continue_as_new(1)
            return None
        return (yield ctx.call_child_workflow(waiting_child, input=1))  # same child id

    client = app.start()
    iid = client.schedule_new_workflow(child_generations, input=0)
    client.raise_workflow_event(iid, "go")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    # As on daprd: the id is held by the old generation's child, so the new one fails fast
    # instead of waiting forever for a result that will be dropped.
    assert state is not None and state.runtime_status == WorkflowStatus.FAILED
    assert "already exists" in state.failure_details.message


def test_child_with_parents_own_id_fails_the_parent(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="self_child")
    def self_child(ctx, _):
        return (yield ctx.call_child_workflow(self_child, instance_id=ctx.instance_id))

    client = app.start()
    started = datetime.now()
    iid = client.schedule_new_workflow(self_child)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None and state.runtime_status == WorkflowStatus.FAILED
    assert "already exists" in state.failure_details.message
    assert (datetime.now() - started).total_seconds() < WAIT
