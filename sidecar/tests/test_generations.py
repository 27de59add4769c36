"""Continue-as-new meets work still in flight from the previous generation.

Action ids restart at 1 in every generation (the SDK numbers actions per execution), so anything
the old generation left running (an activity, a timer, a child) carries the same ids as the new
generation's tasks. These tests pin that nothing of the old generation leaks into the new one,
and that control events (terminate, suspend) arriving during the continue-as-new turn are kept.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta

from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus, when_any

from sidecar.tests.harness import WAIT, WorkflowApp

HOLD_TURN = 1.0  # seconds a workflow keeps its continue-as-new turn in flight


def test_continue_as_new_old_activity_result_not_given_to_new_task(app: WorkflowApp) -> None:
    @app.runtime.activity(name="slow_step")
    def slow_step(ctx, _):
        time.sleep(2)
        return "old"

    @app.runtime.activity(name="fast_step")
    def fast_step(ctx, _):
        return "new"

    @app.runtime.workflow(name="two_generations")
    def two_generations(ctx, generation: int):
        if generation == 0:
            yield when_any([ctx.call_activity(slow_step), ctx.wait_for_external_event("go")])
            ctx.continue_as_new(1)
            return None
        return (yield ctx.call_activity(fast_step))  # task id 1 again

    client = app.start()
    iid = client.schedule_new_workflow(two_generations, input=0)
    client.raise_workflow_event(iid, "go")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == "new"


def test_continue_as_new_old_timer_does_not_fire_new_timer_early(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="timer_generations")
    def timer_generations(ctx, generation: int):
        if generation == 0:
            yield when_any(
                [ctx.create_timer(timedelta(seconds=0.5)), ctx.wait_for_external_event("go")]
            )
            if not ctx.is_replaying:
                time.sleep(HOLD_TURN)  # the old timer falls due while this turn is in flight
            ctx.continue_as_new(1)
            return None
        before = ctx.current_utc_datetime
        yield ctx.create_timer(timedelta(seconds=2))  # timer id 1 again
        return (ctx.current_utc_datetime - before).total_seconds()

    client = app.start()
    iid = client.schedule_new_workflow(timer_generations, input=0)
    client.raise_workflow_event(iid, "go")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) >= 2.0


def start_slow_ticker(app: WorkflowApp) -> tuple[DaprWorkflowClient, str]:
    """A workflow that continues as new on every "tick", holding its first such turn for
    HOLD_TURN seconds; returned once that turn is in flight."""

    @app.runtime.workflow(name="ticker")
    def ticker(ctx, generation: int):
        yield ctx.wait_for_external_event("tick")
        if generation == 0 and not ctx.is_replaying:
            time.sleep(HOLD_TURN)
        ctx.continue_as_new(generation + 1)

    client = app.start()
    iid = client.schedule_new_workflow(ticker, input=0)
    client.raise_workflow_event(iid, "tick")
    time.sleep(0.3)  # the continue-as-new turn is in flight
    return client, iid


def test_terminate_during_continue_as_new_turn_terminates(app: WorkflowApp) -> None:
    client, iid = start_slow_ticker(app)
    client.raise_workflow_event(iid, "tick")
    done = threading.Event()
    threading.Thread(
        target=lambda: (client.terminate_workflow(iid, output="stopped"), done.set()), daemon=True
    ).start()

    assert done.wait(WAIT)
    state = client.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED
    assert json.loads(state.serialized_output) == "stopped"


def test_suspend_during_continue_as_new_turn_keeps_instance_suspended(app: WorkflowApp) -> None:
    client, iid = start_slow_ticker(app)
    done = threading.Event()
    threading.Thread(target=lambda: (client.pause_workflow(iid), done.set()), daemon=True).start()

    assert done.wait(WAIT)
    state = client.get_workflow_state(iid)
    assert state is not None and state.runtime_status == WorkflowStatus.SUSPENDED
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
