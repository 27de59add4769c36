"""External events, durable timers, races between them, continue-as-new, scheduled starts.

Scenarios as in dapr/python-sdk's durabletask end-to-end tests
(ext/dapr-ext-workflow/tests/durabletask/test_orchestration_e2e.py) and daprd's workflow
integration suite (dapr/dapr tests/integration/suite/daprd/workflow). The turn's workflowStarted
is the workflow clock (the SDK's worker sets ``ctx.current_utc_datetime`` from it).
Timers are measured on the workflow clock: ``ctx.current_utc_datetime`` is the timestamp of the
turn's workflowStarted, i.e. when the sidecar dispatched it, so "time after the timer minus time
before it" is exactly how late (or early) the sidecar delivered timerFired.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from dapr.ext.workflow import WorkflowStatus, when_all, when_any

from sidecar.tests.harness import WAIT, WorkflowApp, history_types


def test_external_events_raised_before_wait_are_buffered(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="abc")
    def abc(ctx, _):
        a = yield ctx.wait_for_external_event("A")
        b = yield ctx.wait_for_external_event("B")
        c = yield ctx.wait_for_external_event("C")
        return [a, b, c]

    client = app.start()
    iid = client.schedule_new_workflow(abc)
    # Raised in reverse order, straight after start: each waits in the inbox until asked for.
    client.raise_workflow_event(iid, "C", data="c")
    client.raise_workflow_event(iid, "B", data="b")
    client.raise_workflow_event(iid, "A", data="a")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == ["a", "b", "c"]
    assert history_types(client, iid).count("eventRaised") == 3


def test_external_event_raised_while_pending_is_delivered(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="pending_event")
    def pending_event(ctx, _):
        return (yield ctx.wait_for_external_event("early"))

    client = app.start()
    start_at = datetime.now(UTC) + timedelta(seconds=2)
    iid = client.schedule_new_workflow(pending_event, start_at=start_at)
    client.raise_workflow_event(iid, "early", data={"n": 1})
    after_raise = client.get_workflow_state(iid)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert after_raise is not None and after_raise.runtime_status == WorkflowStatus.PENDING
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"n": 1}


def test_external_event_name_matches_case_insensitively(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="casey")
    def casey(ctx, _):
        return (yield ctx.wait_for_external_event("Approval"))

    client = app.start()
    iid = client.schedule_new_workflow(casey)
    client.raise_workflow_event(iid, "aPPROVAL", data="yes")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"yes"'
    raised = [e for e in client.get_workflow_history(iid) if e.event_type.value == "eventRaised"]
    assert [e.name for e in raised] == ["aPPROVAL"]  # stored as sent


def test_same_event_name_twice_completes_two_waits(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="twice")
    def twice(ctx, _):
        first = yield ctx.wait_for_external_event("tick")
        second = yield ctx.wait_for_external_event("tick")
        return [first, second]

    client = app.start()
    iid = client.schedule_new_workflow(twice)
    client.raise_workflow_event(iid, "tick", data=1)
    client.raise_workflow_event(iid, "tick", data=2)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert json.loads(state.serialized_output) == [1, 2]


# The event is raised once the start has returned, i.e. after the first turn created the timer;
# a timer of an hour cannot win against it however slow the machine, one of a second must.
@pytest.mark.parametrize(
    ("raise_event", "timeout_seconds"), [(True, 3600), (False, 1)], ids=["event_wins", "timer_wins"]
)
def test_when_any_event_against_timer(
    app: WorkflowApp, raise_event: bool, timeout_seconds: int
) -> None:
    @app.runtime.workflow(name="approval")
    def approval(ctx, seconds: int):
        started = ctx.current_utc_datetime
        event = ctx.wait_for_external_event("Approval")
        timeout = ctx.create_timer(timedelta(seconds=seconds))
        winner = yield when_any([event, timeout])
        waited = (ctx.current_utc_datetime - started).total_seconds()
        return {"result": "approved" if winner == event else "timed out", "waited": waited}

    client = app.start()
    iid = client.schedule_new_workflow(approval, input=timeout_seconds)
    if raise_event:
        client.raise_workflow_event(iid, "Approval", data=True)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    output = json.loads(state.serialized_output)
    types = history_types(client, iid)
    if raise_event:
        assert output["result"] == "approved"
        assert "eventRaised" in types and "timerFired" not in types
    else:
        assert output["result"] == "timed out"
        assert output["waited"] >= timeout_seconds  # on the workflow clock: never early
        assert "timerFired" in types and "eventRaised" not in types


def test_timer_fires_not_early(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="sleeper")
    def sleeper(ctx, seconds: float):
        before = ctx.current_utc_datetime
        yield ctx.create_timer(timedelta(seconds=seconds))
        return (ctx.current_utc_datetime - before).total_seconds()

    client = app.start()
    iid = client.schedule_new_workflow(sleeper, input=2)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    # On the workflow clock (the dispatch time of the turn that carried timerFired).
    assert float(state.serialized_output) >= 2
    types = history_types(client, iid)
    assert types.count("timerCreated") == 1
    assert types.count("timerFired") == 1


def test_timer_absolute_datetime_in_past_fires_at_once(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="past_timer")
    def past_timer(ctx, _):
        yield ctx.create_timer(ctx.current_utc_datetime - timedelta(hours=1))
        return "fired"

    client = app.start()
    iid = client.schedule_new_workflow(past_timer)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=5)

    assert state is not None
    assert state.serialized_output == '"fired"'


def test_many_concurrent_timers_all_fire(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="parallel_timers")
    def parallel_timers(ctx, n: int):
        before = ctx.current_utc_datetime
        yield when_all([ctx.create_timer(timedelta(seconds=1 + (i % 3) * 0.5)) for i in range(n)])
        return (ctx.current_utc_datetime - before).total_seconds()

    client = app.start()
    ids = [client.schedule_new_workflow(parallel_timers, input=6) for _ in range(10)]
    states = [client.wait_for_workflow_completion(i, timeout_in_seconds=WAIT) for i in ids]

    for state in states:
        assert state is not None
        assert state.runtime_status == WorkflowStatus.COMPLETED
        assert float(state.serialized_output) >= 2.0  # the last of them, never early
        assert history_types(client, state.instance_id).count("timerFired") == 6


def test_wait_for_external_event_indefinite_completes_on_event(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="forever")
    def forever(ctx, _):
        return (yield ctx.wait_for_external_event("x"))

    client = app.start()
    iid = client.schedule_new_workflow(forever)
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)  # a start does not wait for it
    running = client.get_workflow_state(iid)
    client.raise_workflow_event(iid, "x", data="got it")
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert running is not None and running.runtime_status == WorkflowStatus.RUNNING
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"got it"'
    events = client.get_workflow_history(iid)
    # The SDK asks for a sentinel timer at 9999-12-31; it must be accepted and kept.
    timers = [e for e in events if e.event_type.value == "timerCreated"]
    assert len(timers) == 1
    assert "timerFired" not in [e.event_type.value for e in events]


def test_wait_for_external_event_timeout_raises_in_workflow(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="impatient")
    def impatient(ctx, _):
        try:
            yield ctx.wait_for_external_event("never", timeout=timedelta(seconds=1))
        except TimeoutError:
            return "timeout"
        return "event"

    client = app.start()
    iid = client.schedule_new_workflow(impatient)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"timeout"'


def test_raise_event_to_completed_instance_is_accepted(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="quick")
    def quick(ctx, _):
        return "done"

    client = app.start()
    iid = client.schedule_new_workflow(quick)
    client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    before = history_types(client, iid)
    client.raise_workflow_event(iid, "late", data=1)
    state = client.get_workflow_state(iid)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"done"'
    assert history_types(client, iid) == before


def test_continue_as_new_carries_over_saved_events(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="accumulate")
    def accumulate(ctx, seen: list):
        value = yield ctx.wait_for_external_event("my_event")
        seen = [*seen, value]
        if len(seen) < 5:
            ctx.continue_as_new(seen, save_events=True)
            return None
        return seen

    client = app.start()
    iid = client.schedule_new_workflow(accumulate, input=[])
    for i in range(1, 6):
        client.raise_workflow_event(iid, "my_event", data=i)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == [1, 2, 3, 4, 5]
    # The input and the history are the last generation's.
    assert json.loads(state.serialized_input) == [1, 2, 3, 4]
    types = history_types(client, iid)
    assert types[:2] == ["workflowStarted", "executionStarted"]
    assert types.count("executionStarted") == 1
    assert types[-1] == "executionCompleted"


def test_continue_as_new_with_activity_runs_each_generation(app: WorkflowApp) -> None:
    results: list[int] = []

    @app.runtime.activity(name="double")
    def double(ctx, value: int) -> int:
        results.append(value * 2)
        return value * 2

    @app.runtime.workflow(name="counter")
    def counter(ctx, n: int):
        processed = yield ctx.call_activity(double, input=n)
        if n < 3:
            ctx.continue_as_new(n + 1)
            return None
        return {"counter": n, "processed": processed}

    client = app.start()
    iid = client.schedule_new_workflow(counter, input=1)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == {"counter": 3, "processed": 6}
    assert state.serialized_input == "3"
    assert results == [2, 4, 6]
    assert history_types(client, iid).count("taskScheduled") == 1


def test_continue_as_new_with_timer_each_generation(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="ticker")
    def ticker(ctx, n: int):
        yield ctx.create_timer(timedelta(seconds=0.3))
        if n < 4:
            ctx.continue_as_new(n + 1)
            return None
        return n

    client = app.start()
    iid = client.schedule_new_workflow(ticker, input=0)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == "4"


def test_scheduled_start_stays_pending_until_start_time(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="later")
    def later(ctx, _):
        return ctx.current_utc_datetime.replace(tzinfo=UTC).timestamp()

    client = app.start()
    start_at = datetime.now(UTC) + timedelta(seconds=3)
    iid = client.schedule_new_workflow(later, start_at=start_at)
    # Read before the start time: a start that waited for the first turn (which cannot come
    # before start_at) would return a running or finished instance here.
    pending = client.get_workflow_state(iid)
    read_at = datetime.now(UTC)
    with pytest.raises(TimeoutError):
        client.wait_for_workflow_start(iid, timeout_in_seconds=1)
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert read_at < start_at, "the machine was too slow to see the instance pending"
    assert pending is not None
    assert pending.runtime_status == WorkflowStatus.PENDING
    assert pending.name == "later"
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert float(state.serialized_output) >= start_at.timestamp()  # never early


def test_scheduled_start_in_the_past_runs_at_once(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="overdue")
    def overdue(ctx, _):
        return "ran"

    client = app.start()
    iid = client.schedule_new_workflow(overdue, start_at=datetime.now(UTC) - timedelta(minutes=5))
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=5)

    assert state is not None
    assert state.serialized_output == '"ran"'


def test_wait_for_start_returns_after_first_turn(app: WorkflowApp) -> None:
    @app.runtime.workflow(name="waiter")
    def waiter(ctx, _):
        return (yield ctx.wait_for_external_event("go"))

    client = app.start()
    ids = [client.schedule_new_workflow(waiter) for _ in range(5)]
    # A start returns once the instance is on disk (test_start_without_worker.py), not after
    # its first turn; waiting for the start does.
    states = [client.wait_for_workflow_start(i, timeout_in_seconds=WAIT) for i in ids]

    for state in states:
        assert state is not None
        assert state.runtime_status == WorkflowStatus.RUNNING
        assert state.created_at.year > 2000
        assert state.last_updated_at >= state.created_at
    for i in ids:
        client.raise_workflow_event(i, "go", data="x")
    for i in ids:
        done = client.wait_for_workflow_completion(i, timeout_in_seconds=WAIT)
        assert done is not None and done.runtime_status == WorkflowStatus.COMPLETED


def test_work_scheduled_before_worker_connects_completes(app: WorkflowApp) -> None:
    @app.runtime.activity(name="late_activity")
    def late_activity(ctx, value):
        return value * 3

    @app.runtime.workflow(name="early_bird")
    def early_bird(ctx, value):
        return (yield ctx.call_activity(late_activity, input=value))

    client = app.client
    # A start returns once the instance is on disk, with or without a worker
    # (test_start_without_worker.py); the workflow waits, PENDING, for one.
    started = client.schedule_new_workflow(early_bird, input=7, instance_id="early-1")
    pending = client.get_workflow_state("early-1")
    app.start()
    state = client.wait_for_workflow_completion("early-1", timeout_in_seconds=WAIT)

    assert pending is not None and pending.runtime_status == WorkflowStatus.PENDING
    assert started == "early-1"
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == "21"
