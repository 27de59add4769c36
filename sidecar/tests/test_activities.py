"""Activities: sync and async, chaining, fan-out/fan-in, failures, retries, custom status.

Scenarios as in dapr/python-sdk's durabletask end-to-end tests
(ext/dapr-ext-workflow/tests/durabletask/test_orchestration_e2e.py: activity sequence, fan-out,
failures, retries); the history layout as daprd's workflow integration suite checks it (dapr/dapr
tests/integration/suite/daprd/workflow).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta

from dapr.ext.workflow import (
    RetryPolicy,
    TaskFailedError,
    WorkflowStatus,
    when_all,
)
from dapr.ext.workflow._durabletask import task

from sidecar.tests.harness import WAIT, WorkflowApp, history_types


def test_empty_workflow_completes_without_payloads(app: WorkflowApp) -> None:
    ran = threading.Event()

    @app.runtime.workflow(name="empty_workflow")
    def empty_workflow(ctx, _):
        ran.set()

    client = app.start()
    iid = client.schedule_new_workflow(empty_workflow)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    again = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert ran.is_set()
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.name == "empty_workflow"
    assert state.instance_id == iid
    assert state.serialized_input is None
    assert state.serialized_output is None
    assert state.serialized_custom_status is None
    assert state.failure_details is None
    assert again is not None and again.runtime_status == WorkflowStatus.COMPLETED


def test_activity_sequence_returns_results_in_order(app: WorkflowApp) -> None:
    @app.runtime.activity(name="plus_one")
    def plus_one(ctx, value: int) -> int:
        return value + 1

    @app.runtime.workflow(name="sequence")
    def sequence(ctx, start: int):
        numbers = [start]
        current = start
        for _ in range(10):
            current = yield ctx.call_activity(plus_one, input=current)
            numbers.append(current)
        return numbers

    client = app.start()
    iid = client.schedule_new_workflow(sequence, input=1)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_input == "1"
    assert json.loads(state.serialized_output) == list(range(1, 12))
    # Start turn, then per activity [taskScheduled, workflowStarted, taskCompleted], then end.
    assert history_types(client, iid) == (
        ["workflowStarted", "executionStarted"]
        + ["taskScheduled", "workflowStarted", "taskCompleted"] * 10
        + ["executionCompleted"]
    )


def test_activity_history_layout_matches_daprd(app: WorkflowApp) -> None:
    @app.runtime.activity(name="echo")
    def echo(ctx, value):
        return value

    @app.runtime.workflow(name="three_steps")
    def three_steps(ctx, _):
        a = yield ctx.call_activity(echo, input="a")
        b = yield ctx.call_activity(echo, input="b")
        c = yield ctx.call_activity(echo, input="c")
        return a + b + c

    client = app.start()
    iid = client.schedule_new_workflow(three_steps)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    events = client.get_workflow_history(iid)

    assert state is not None and state.serialized_output == '"abc"'
    assert [e.event_type.value for e in events] == [
        "workflowStarted",
        "executionStarted",
        "taskScheduled",
        "workflowStarted",
        "taskCompleted",
        "taskScheduled",
        "workflowStarted",
        "taskCompleted",
        "taskScheduled",
        "workflowStarted",
        "taskCompleted",
        "executionCompleted",
    ]
    scheduled = [e for e in events if e.event_type.value == "taskScheduled"]
    completed = [e for e in events if e.event_type.value == "taskCompleted"]
    # taskScheduled carries the action id (1, 2, 3); completions point back at it.
    assert [e.event_id for e in scheduled] == [1, 2, 3]
    assert [e.name for e in scheduled] == ["echo", "echo", "echo"]
    assert [e.task_scheduled_id for e in completed] == [1, 2, 3]
    assert events[1].name == "three_steps"
    # Each turn's workflowStarted is the workflow clock: it never goes backwards.
    clock = [e.timestamp for e in events if e.event_type.value == "workflowStarted"]
    assert clock == sorted(clock)


def test_activity_async_runs_and_returns(app: WorkflowApp) -> None:
    @app.runtime.activity(name="async_double")
    async def async_double(ctx, value: int) -> int:
        await asyncio.sleep(0.01)
        return value * 2

    @app.runtime.workflow(name="async_caller")
    def async_caller(ctx, value: int):
        first = yield ctx.call_activity(async_double, input=value)
        second = yield ctx.call_activity(async_double, input=first)
        return second

    client = app.start()
    iid = client.schedule_new_workflow(async_caller, input=5)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == "20"


def test_activity_payloads_round_trip_unchanged(app: WorkflowApp) -> None:
    payload = {"unicode": "zażółć ✓", "nested": [1, 2.5, None, True], "empty": "", "zero": 0}

    @app.runtime.activity(name="identity")
    def identity(ctx, value):
        return value

    @app.runtime.workflow(name="round_trip")
    def round_trip(ctx, value):
        out = yield ctx.call_activity(identity, input=value)
        none_out = yield ctx.call_activity(identity)
        return {"out": out, "none": none_out}

    client = app.start()
    iid = client.schedule_new_workflow(round_trip, input=payload)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_input) == payload
    assert json.loads(state.serialized_output) == {"out": payload, "none": None}


def test_activity_context_carries_instance_and_task_ids(app: WorkflowApp) -> None:
    seen: list[tuple[str, int]] = []

    @app.runtime.activity(name="who_am_i")
    def who_am_i(ctx, _):
        seen.append((ctx.workflow_id, ctx.task_id))
        return ctx.task_id

    @app.runtime.workflow(name="ids_workflow")
    def ids_workflow(ctx, _):
        first = yield ctx.call_activity(who_am_i)
        yield ctx.create_timer(timedelta(seconds=0))
        second = yield ctx.call_activity(who_am_i)
        return [first, second]

    client = app.start()
    iid = client.schedule_new_workflow(ids_workflow, instance_id="ids-1")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    # Action ids: activity 1, timer 2, activity 3; taskId is the taskScheduled event id.
    assert json.loads(state.serialized_output) == [1, 3]
    assert seen == [("ids-1", 1), ("ids-1", 3)]


def test_activity_fan_out_fan_in_collects_all_results(app: WorkflowApp) -> None:
    calls: list[int] = []
    lock = threading.Lock()

    @app.runtime.activity(name="square")
    def square(ctx, value: int) -> int:
        with lock:
            calls.append(value)
        return value * value

    @app.runtime.workflow(name="fan_out")
    def fan_out(ctx, count: int):
        results = yield when_all([ctx.call_activity(square, input=i) for i in range(count)])
        return results

    client = app.start()
    iid = client.schedule_new_workflow(fan_out, input=20)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == [i * i for i in range(20)]
    assert sorted(calls) == list(range(20))
    types = history_types(client, iid)
    assert types.count("taskScheduled") == 20
    assert types.count("taskCompleted") == 20


def test_activity_failure_caught_runs_compensation(app: WorkflowApp) -> None:
    compensations: list[int] = []

    @app.runtime.activity(name="explode")
    def explode(ctx, _):
        raise RuntimeError("Kah-BOOOOM!!!")

    @app.runtime.activity(name="compensate")
    def compensate(ctx, _):
        compensations.append(1)

    @app.runtime.workflow(name="compensating")
    def compensating(ctx, _):
        try:
            yield ctx.call_activity(explode)
        except TaskFailedError as err:
            yield ctx.call_activity(compensate)
            yield ctx.call_activity(compensate)
            return err.details.message
        return "not reached"

    client = app.start()
    iid = client.schedule_new_workflow(compensating)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == json.dumps("Kah-BOOOOM!!!")
    assert state.failure_details is None
    assert len(compensations) == 2
    assert "taskFailed" in history_types(client, iid)


def test_activity_failure_uncaught_fails_workflow_with_details(app: WorkflowApp) -> None:
    @app.runtime.activity(name="explode")
    def explode(ctx, _):
        raise ValueError("bad input 42")

    @app.runtime.workflow(name="doomed")
    def doomed(ctx, _):
        yield ctx.call_activity(explode)

    client = app.start()
    iid = client.schedule_new_workflow(doomed)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "TaskFailedError"
    assert state.failure_details.message.endswith("failed: bad input 42")
    assert state.failure_details.stack_trace
    events = app.client.get_workflow_history(iid)
    failed = [e for e in events if e.event_type.value == "taskFailed"]
    assert len(failed) == 1
    assert failed[0].failure_details is not None
    assert failed[0].failure_details.error_type == "ValueError"
    assert failed[0].failure_details.message == "bad input 42"
    assert events[-1].event_type.value == "executionCompleted"
    assert events[-1].failure_details is not None


def test_workflow_exception_fails_with_error_type(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="raiser")
    def raiser(ctx, _):
        raise KeyError("missing-thing")

    client = app.start()
    iid = client.schedule_new_workflow(raiser)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    quiet = client.wait_for_workflow_completion(iid, fetch_payloads=False, timeout_in_seconds=5)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "KeyError"
    assert "missing-thing" in state.failure_details.message
    assert state.failure_details.stack_trace
    # Failure details are a payload: absent unless fetch_payloads (getInputsAndOutputs).
    assert quiet is not None and quiet.runtime_status == WorkflowStatus.FAILED
    assert quiet.failure_details is None


def test_workflow_not_registered_fails(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="registered")
    def registered(ctx, _):
        return 1

    client = app.start()
    iid = client.schedule_new_workflow("nope_not_registered")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.FAILED
    assert state.name == "nope_not_registered"
    assert state.failure_details is not None
    assert state.failure_details.error_type == "OrchestratorNotRegisteredError"


def test_activity_not_registered_surfaces_task_failure(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="calls_missing")
    def calls_missing(ctx, _):
        try:
            yield ctx.call_activity("no_such_activity")
        except TaskFailedError as err:
            return err.details.error_type
        return "not reached"

    client = app.start()
    iid = client.schedule_new_workflow(calls_missing)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"ActivityNotRegisteredError"'


def test_custom_status_reported_only_with_payloads(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="status_setter")
    def status_setter(ctx, _):
        ctx.set_custom_status("foobaz")
        yield ctx.wait_for_external_event("finish")
        ctx.set_custom_status("done-status")

    client = app.start()
    iid = client.schedule_new_workflow(status_setter)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)  # a start does not wait for it
    running = client.get_workflow_state(iid)
    running_quiet = client.get_workflow_state(iid, fetch_payloads=False)
    client.raise_workflow_event(iid, "finish")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert running is not None and running.runtime_status == WorkflowStatus.RUNNING
    assert running.serialized_custom_status == "foobaz"
    assert running_quiet is not None and running_quiet.serialized_custom_status is None
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_custom_status == "done-status"


def test_retry_policy_activity_retries_until_success(app: WorkflowApp) -> None:
    attempts: list[str] = []

    @app.runtime.activity(name="flaky")
    def flaky(ctx, _):
        attempts.append(ctx.get_inner_context().task_execution_id)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)} failed")
        return "ok"

    policy = RetryPolicy(first_retry_interval=timedelta(seconds=0.1), max_number_of_attempts=5)

    @app.runtime.workflow(name="retrying")
    def retrying(ctx, _):
        return (yield ctx.call_activity(flaky, retry_policy=policy))

    client = app.start()
    iid = client.schedule_new_workflow(retrying)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"ok"'
    assert len(attempts) == 3
    # The taskExecutionId is copied action -> taskScheduled -> ActivityRequest, and an SDK
    # retry keeps it (the SDK's RetryableTask): users key idempotency on it.
    assert attempts[0] and len(set(attempts)) == 1
    types = history_types(client, iid)
    assert types.count("taskFailed") == 2
    assert types.count("timerCreated") == 2
    assert types.count("timerFired") == 2


def test_retry_policy_activity_exhausted_fails(app: WorkflowApp) -> None:
    runs: list[int] = []

    @app.runtime.activity(name="always_fails")
    def always_fails(ctx, _):
        runs.append(1)
        raise RuntimeError("Kah-BOOOOM!!!")

    policy = RetryPolicy(
        first_retry_interval=timedelta(seconds=0.05),
        max_number_of_attempts=3,
        backoff_coefficient=1,
    )

    @app.runtime.workflow(name="gives_up")
    def gives_up(ctx, _):
        yield ctx.call_activity(always_fails, retry_policy=policy)

    client = app.start()
    iid = client.schedule_new_workflow(gives_up)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert state.failure_details.error_type == "TaskFailedError"
    assert state.failure_details.message.endswith("failed: Kah-BOOOOM!!!")
    assert len(runs) == 3


def test_retry_policy_non_retryable_error_runs_once(app: WorkflowApp) -> None:
    runs: list[int] = []

    @app.runtime.activity(name="fatal")
    def fatal(ctx, _):
        runs.append(1)
        raise task.NonRetryableError("Cannot retry this!")

    policy = RetryPolicy(first_retry_interval=timedelta(seconds=0.05), max_number_of_attempts=3)

    @app.runtime.workflow(name="no_retry")
    def no_retry(ctx, _):
        yield ctx.call_activity(fatal, retry_policy=policy)

    client = app.start()
    iid = client.schedule_new_workflow(no_retry)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.FAILED
    assert state.failure_details is not None
    assert "Cannot retry this!" in state.failure_details.message
    assert len(runs) == 1


def test_retry_policy_timeout_caps_attempts(app: WorkflowApp) -> None:
    runs: list[int] = []

    @app.runtime.activity(name="slow_fail")
    def slow_fail(ctx, _):
        runs.append(1)
        raise RuntimeError("nope")

    # Delays 0.5, 1.0, 2.0 s: the 4th attempt would start 3.5 s in, past the 3 s budget.
    policy = RetryPolicy(
        first_retry_interval=timedelta(seconds=0.5),
        max_number_of_attempts=6,
        backoff_coefficient=2,
        retry_timeout=timedelta(seconds=3),
    )

    @app.runtime.workflow(name="capped")
    def capped(ctx, _):
        yield ctx.call_activity(slow_fail, retry_policy=policy)

    client = app.start()
    iid = client.schedule_new_workflow(capped)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.FAILED
    assert len(runs) == 3


def test_completion_is_reported_only_once_the_whole_history_is_stored(
    app: WorkflowApp, sidecar
) -> None:
    """With slow commits, a fan-in's later turns are applied in memory while earlier ones are
    still being written: the waiter must not be told "completed" before the last commit."""
    store = sidecar.engine.store
    run_batch = store._run_batch

    def slow_run_batch(batch):
        time.sleep(0.03)
        run_batch(batch)

    store._run_batch = slow_run_batch

    @app.runtime.activity(name="cube")
    def cube(ctx, value: int) -> int:
        return value**3

    @app.runtime.workflow(name="fan_in_slow_disk")
    def fan_in_slow_disk(ctx, count: int):
        return (yield when_all([ctx.call_activity(cube, input=i) for i in range(count)]))

    client = app.start()
    for _ in range(3):
        iid = client.schedule_new_workflow(fan_in_slow_disk, input=20)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
        types = history_types(client, iid)
        assert types.count("taskCompleted") == 20
        assert types[-1] == "executionCompleted"
