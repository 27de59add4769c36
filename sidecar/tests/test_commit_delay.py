"""Commit delay: a running workflow's steps share commits; what a client waits for does not wait.

The worker's completion calls are answered after their commit either way (nothing is
acknowledged before it is on disk); only how many steps one fsync covers changes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from dapr.ext.workflow import WorkflowStatus, when_all
from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar import Sidecar
from sidecar.server import DEFAULT_COMMIT_DELAY_MS
from sidecar.storage.sql import DELETE_ACTIVITY
from sidecar.tests.harness import (
    WAIT,
    RawWorker,
    WorkflowApp,
    schedule_task,
    sidecar_start,
    start_raw,
)

STEPS = 5


@pytest.fixture
def slow_committing_sidecar(db_path: Path) -> Iterator[Sidecar]:
    sc = sidecar_start(db_path, commit_delay_ms=100)
    try:
        yield sc
    finally:
        sc.stop()


def register_chain(app: WorkflowApp, step_seconds: float = 0.0) -> None:
    @app.runtime.activity(name="add_one")
    def add_one(ctx, value: int) -> int:
        time.sleep(step_seconds)
        return value + 1

    @app.runtime.workflow(name="chain")
    def chain(ctx, value: int):
        for _ in range(STEPS):
            value = yield ctx.call_activity(add_one, input=value)
        return value


class Write(NamedTuple):
    key: str | None  # its defer_key
    earliest: float  # the store stamps it (time.monotonic) between these two
    latest: float


class StoreLog:
    """Every write the sidecar's store is given, and every commit's (start, end), from now on
    until ``stop``."""

    def __init__(self, sidecar: Sidecar) -> None:
        store = sidecar.store
        assert store is not None
        self.store = store
        self.writes: list[Write] = []
        self.commits: list[tuple[float, float]] = []
        write, run_batch = store.write, store._run_batch

        def spying_write(op, *, defer_key=None):
            earliest = time.monotonic()
            fut = write(op, defer_key=defer_key)
            self.writes.append(Write(defer_key, earliest, time.monotonic()))
            return fut

        def timed_run_batch(batch):
            start = time.monotonic()
            run_batch(batch)
            self.commits.append((start, time.monotonic()))

        store.write = spying_write  # type: ignore[method-assign]
        store._run_batch = timed_run_batch  # type: ignore[method-assign]

    def keys(self) -> list[str | None]:
        return [w.key for w in self.writes]

    def late_holds(self, delay: float) -> int:
        """Held writes whose hold the delay may have ended (module doc of ``sidecar.storage.store``):
        the next write came later than the delay, or the writer was still busy with an
        earlier commit when the delay ran out. An upper bound: a late hold may end a batch."""
        late = 0
        for w, nxt in itertools.pairwise(self.writes):
            if w.key is None:
                continue
            next_too_late = nxt.latest - w.earliest > delay
            # The store's hold of w runs out somewhere in [w.earliest, w.latest] + delay.
            busy_then = any(
                start <= w.latest + delay and end >= w.earliest + delay
                for start, end in self.commits
            )
            late += next_too_late or busy_then
        return late

    def stop(self) -> None:
        del self.store.write, self.store._run_batch


class ChainRun(NamedTuple):
    state: Any
    commits: int
    late: int  # StoreLog.late_holds


def run_chain_counting_commits(sidecar: Sidecar, step_seconds: float = 0.0) -> ChainRun:
    """Run a chain of STEPS activities from 10, counting its commits and late holds.

    A held batch also commits when the delay runs out, which a busy machine makes happen now
    and then: the tests allow one commit per late hold, so that they check the holding rule
    rather than the machine's speed. A run with so many late holds that committing every step
    would pass is run again (five tries), so that the check never passes for want of one."""
    steps = 2 + 2 * STEPS
    runs = []
    for _ in range(5):
        runs.append(_run_chain_once(sidecar, step_seconds))
        if 3 + runs[-1].late < steps:
            return runs[-1]
    raise AssertionError(f"too busy to tell holding from one commit per step: {runs}")


def _run_chain_once(sidecar: Sidecar, step_seconds: float) -> ChainRun:
    app = WorkflowApp(sidecar.grpc_address)
    try:
        register_chain(app, step_seconds)
        client = app.start()
        log = StoreLog(sidecar)
        try:
            iid = client.schedule_new_workflow("chain", input=10)
            state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        finally:
            log.stop()
    finally:
        app.close()
    return ChainRun(state, len(log.commits), log.late_holds(sidecar.commit_delay_ms / 1000))


def start_waiting_workflow(app: WorkflowApp) -> tuple[Any, str]:
    """Start a workflow that waits for an event that never comes; (client, instance id)."""

    @app.runtime.workflow(name="waits")
    def waits(ctx, _):
        yield ctx.wait_for_external_event("never")

    client = app.start()
    iid = client.schedule_new_workflow("waits")
    client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    return client, iid


def test_only_a_change_of_status_is_committed_at_once(sidecar: Sidecar) -> None:
    log = StoreLog(sidecar)
    app = WorkflowApp(sidecar.grpc_address)
    try:
        register_chain(app)
        client = app.start()
        iid = client.schedule_new_workflow("chain", input=0)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    finally:
        app.close()
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    keys = log.keys()
    # The start and the first turn (pending -> running) are waited for by the client that
    # started it; then each activity's result and each turn that schedules the next one may
    # wait for the workflow's next step; the last turn (running -> completed) is waited for
    # again.
    assert keys == [None, None] + [iid, iid] * (STEPS - 1) + [iid, None]


def test_a_workflow_completes_promptly_with_fewer_commits_than_steps(
    slow_committing_sidecar: Sidecar,
) -> None:
    run = run_chain_counting_commits(slow_committing_sidecar)
    assert run.state is not None and run.state.runtime_status == WorkflowStatus.COMPLETED
    assert run.state.serialized_output == str(10 + STEPS)
    # One commit per step without the delay: the start, 6 turns, 5 activity results. With the
    # delay: the start, the first turn, the last turn with the steps in between, and one more
    # for each hold the 100 ms delay ran out on (none, unless the machine is very busy).
    assert run.commits <= 3 + run.late, f"{run} for {2 + 2 * STEPS} steps"


def test_client_operations_on_a_running_workflow_are_never_deferred(
    slow_committing_sidecar: Sidecar,
) -> None:
    app = WorkflowApp(slow_committing_sidecar.grpc_address)
    try:
        client, iid = start_waiting_workflow(app)
        log = StoreLog(slow_committing_sidecar)
        client.raise_workflow_event(iid, "other")
        client.pause_workflow(iid)
        client.resume_workflow(iid)
        client.terminate_workflow(iid)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        client.purge_workflow(iid)
    finally:
        app.close()
    assert state is not None and state.runtime_status == WorkflowStatus.TERMINATED
    # Six operations (raise, pause, resume, terminate, purge, and the terminate's turn) and
    # the turns that change the status commit at once; only the turn that took the unrelated
    # event in may wait for company, when the pause's event arrived while it ran (its turn is
    # then on its way; that turn changes the status and commits both).
    keys = log.keys()
    assert len(keys) >= 7, keys
    assert sum(key is not None for key in keys) <= 1, keys


def test_a_turn_that_leaves_the_workflow_waiting_commits_at_once(
    slow_committing_sidecar: Sidecar,
) -> None:
    app = WorkflowApp(slow_committing_sidecar.grpc_address)
    try:
        client, iid = start_waiting_workflow(app)
        log = StoreLog(slow_committing_sidecar)
        client.raise_workflow_event(iid, "other")
        deadline = time.monotonic() + WAIT
        while len(log.writes) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        app.close()
    # The event, then the turn that took it in and left the workflow waiting: no next step is
    # on its way, so nothing would come to share the commit with.
    assert log.keys() == [None, None]


def test_a_chain_of_slow_steps_still_shares_commits(sidecar: Sidecar) -> None:
    # Each activity takes 40 ms, as a long workflow's turns take the SDK (it replays the whole
    # history): the steps are further apart than a few hops, and still share commits.
    assert sidecar.commit_delay_ms == DEFAULT_COMMIT_DELAY_MS
    run = run_chain_counting_commits(sidecar, step_seconds=0.04)
    assert run.state is not None and run.state.serialized_output == str(10 + STEPS)
    # One commit per step would be 12; held: the start, the first turn, the last turn with
    # the steps in between (and one more for each hold the delay ran out on, see above).
    assert run.commits <= 3 + run.late, f"{run} for {2 + 2 * STEPS} steps"


def test_a_fan_out_holds_only_its_last_result(
    slow_committing_sidecar: Sidecar,
) -> None:
    # Each held result keeps an SDK activity thread waiting for its answer (cpu_count + 4
    # threads, at least 5), which the fan-out's other activities need: holding results while
    # they run would leave the fan-out short of threads, waiting out the delay.
    engine = slow_committing_sidecar.engine
    outstanding: set = set()
    most = 0
    write = engine.write

    def spying_write(statements, *, defer_for=None):
        nonlocal most
        fut = write(statements, defer_for=defer_for)
        if defer_for is not None and statements[0][0] == DELETE_ACTIVITY:
            outstanding.add(fut)
            fut.add_done_callback(outstanding.discard)
            most = max(most, len(outstanding))
        return fut

    engine.write = spying_write  # type: ignore[method-assign]
    app = WorkflowApp(slow_committing_sidecar.grpc_address)
    try:

        @app.runtime.activity(name="square")
        def square(ctx, value: int) -> int:
            return value * value

        @app.runtime.workflow(name="fan_out")
        def fan_out(ctx, count: int):
            results = yield when_all([ctx.call_activity(square, input=i) for i in range(count)])
            return sum(results)

        client = app.start()
        iid = client.schedule_new_workflow("fan_out", input=24)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    finally:
        app.close()
    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == str(sum(i * i for i in range(24)))
    assert most == 1, most  # the last result, with no other activity left to run


def test_stopping_answers_held_completion_calls_before_closing_the_server(
    db_path: Path,
) -> None:
    # A held step's completion call waits for its commit. On shutdown the held steps commit
    # first, so their calls are answered before the gRPC server starts closing rather than
    # racing its grace period (with the longest delay, the hold would outlast it).
    sidecar = sidecar_start(db_path, commit_delay_ms=1000)
    engine, server = sidecar.engine, sidecar._server
    assert engine is not None and server is not None
    events: list[str] = []
    complete_activity, stop_server = engine.complete_activity, server.stop

    async def recording_complete_activity(response):
        await complete_activity(response)
        events.append("first step answered")

    async def recording_stop(grace):
        events.append("server closing")
        await stop_server(grace)

    engine.complete_activity = recording_complete_activity  # type: ignore[method-assign]
    server.stop = recording_stop  # type: ignore[method-assign]
    second_started, release = threading.Event(), threading.Event()
    app = WorkflowApp(sidecar.grpc_address)
    try:

        @app.runtime.activity(name="step")
        def step(ctx, n: int) -> int:
            if n == 1:
                second_started.set()
                release.wait(WAIT)
            return n + 1

        @app.runtime.workflow(name="two_steps")
        def two_steps(ctx, _):
            first = yield ctx.call_activity(step, input=0)
            return (yield ctx.call_activity(step, input=first))

        client = app.start()
        client.schedule_new_workflow("two_steps")
        assert second_started.wait(WAIT)
        # The first result and the turn that scheduled the second step are held together.
        assert events == []
        sidecar.stop()
    finally:
        release.set()
        app.close()
        sidecar.stop()
    assert events == ["first step answered", "server closing"]


def test_a_turn_that_an_event_arrived_during_is_held_for_the_next_turn(
    sidecar: Sidecar, stub, raw_worker: RawWorker
) -> None:
    # Driven by hand, so that the event arrives while the turn is with the worker: the turn's
    # outcome leaves the workflow waiting, but the event makes the next turn due at once.
    thread, _ = start_raw(stub, "held-1")
    first = raw_worker.next_item()
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(
            instanceId="held-1",
            actions=[schedule_task(1, "act")],
            completionToken=first.completionToken,
        ),
        timeout=WAIT,
    )
    thread.join(WAIT)
    activity = raw_worker.next_item()
    stub.CompleteActivityTask(
        pb.ActivityResponse(
            instanceId="held-1", taskId=1, completionToken=activity.completionToken
        ),
        timeout=WAIT,
    )
    second = raw_worker.next_item()
    stub.RaiseEvent(pb.RaiseEventRequest(instanceId="held-1", name="ev"), timeout=WAIT)

    log = StoreLog(sidecar)
    stub.CompleteOrchestratorTask(
        pb.WorkflowResponse(instanceId="held-1", completionToken=second.completionToken),
        timeout=WAIT,
    )
    third = raw_worker.next_item()

    assert [e.WhichOneof("eventType") for e in third.workflowRequest.newEvents] == [
        "workflowStarted",
        "eventRaised",
    ]
    assert log.keys() == ["held-1"]
