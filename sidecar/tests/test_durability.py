"""Durability across a sidecar restart on the same SQLite file (in-process, graceful stop).

The SIGKILL variants live in test_crash.py and test_acknowledged.py. Here a restart must keep
every instance, its history, pending timers and scheduled starts, and a timer that fell due
while the sidecar was down must fire once a worker is back, and never early.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dapr.ext.workflow import WorkflowRuntime, WorkflowStatus

from sidecar import Sidecar
from sidecar.engine.status import RUNNING
from sidecar.storage.sql import load_active
from sidecar.tests.harness import WAIT, WorkflowApp, history_types, sidecar_start, wait_until


class Restartable:
    """A sidecar on one database that a test can stop and start again (new port each time)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.sidecar: Sidecar | None = sidecar_start(db_path)
        self.apps: list[WorkflowApp] = []

    def app(self) -> WorkflowApp:
        assert self.sidecar is not None
        app = WorkflowApp(self.sidecar.grpc_address)
        self.apps.append(app)
        return app

    def stop(self) -> None:
        for app in self.apps:
            app.close()
        self.apps.clear()
        if self.sidecar is not None:
            self.sidecar.stop()
            self.sidecar = None

    def start(self) -> None:
        self.sidecar = sidecar_start(self.db_path)


@pytest.fixture
def node(db_path: Path) -> Iterator[Restartable]:
    r = Restartable(db_path)
    try:
        yield r
    finally:
        r.stop()


def _register_waiter(runtime: WorkflowRuntime) -> None:
    @runtime.activity(name="stamp")
    def stamp(ctx, value):
        return f"stamped:{value}"

    @runtime.workflow(name="durable_waiter")
    def durable_waiter(ctx, value):
        first = yield ctx.call_activity(stamp, input=value)
        event = yield ctx.wait_for_external_event("go")
        return [first, event]


def test_restart_keeps_running_and_completed_instances(node: Restartable) -> None:
    app = node.app()
    _register_waiter(app.runtime)
    client = app.start()
    running = client.schedule_new_workflow("durable_waiter", input="r", instance_id="run-1")
    done = client.schedule_new_workflow("durable_waiter", input="d", instance_id="done-1")
    client.raise_workflow_event(done, "go", data="finished")
    client.wait_for_workflow_completion(done, timeout_in_seconds=WAIT)
    assert wait_for_history(client, running, "taskCompleted")
    history_before = history_types(client, running)
    done_before = client.get_workflow_state(done)

    node.stop()
    node.start()
    app2 = node.app()
    _register_waiter(app2.runtime)
    client2 = app2.start()

    assert history_types(client2, running) == history_before
    done_after = client2.get_workflow_state(done)
    assert done_after is not None and done_before is not None
    assert done_after.runtime_status == WorkflowStatus.COMPLETED
    assert done_after.serialized_output == done_before.serialized_output
    assert set(client2.iter_workflow_instance_ids()) == {"run-1", "done-1"}
    client2.raise_workflow_event(running, "go", data="after restart")
    state = client2.wait_for_workflow_completion(running, timeout_in_seconds=WAIT)
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == ["stamped:r", "after restart"]


def wait_for_history(client, instance_id: str, event_type: str) -> bool:
    return wait_until(lambda: event_type in history_types(client, instance_id), timeout=WAIT)


def _register_sleeper(runtime: WorkflowRuntime) -> None:
    @runtime.workflow(name="durable_sleeper")
    def durable_sleeper(ctx, seconds: float):
        fire_at = ctx.current_utc_datetime + timedelta(seconds=seconds)
        yield ctx.create_timer(fire_at)
        return {
            "fire_at": fire_at.replace(tzinfo=UTC).timestamp(),
            "fired": ctx.current_utc_datetime.replace(tzinfo=UTC).timestamp(),
        }


def stored_fire_times(db_path: Path) -> list[float]:
    """When each timer on disk falls due (seconds since the epoch)."""
    with sqlite3.connect(db_path) as conn:
        return [at for (at,) in conn.execute("SELECT fire_at FROM timers")]


def test_timer_due_while_down_fires_after_restart(node: Restartable) -> None:
    app = node.app()
    _register_sleeper(app.runtime)
    client = app.start()
    ids = [client.schedule_new_workflow("durable_sleeper", input=1) for _ in range(5)]

    node.stop()
    fire_times = stored_fire_times(node.db_path)
    assert len(fire_times) == 5
    # Every timer falls due while the sidecar is down.
    assert wait_until(lambda: time.time() > max(fire_times))
    node.start()
    app2 = node.app()
    _register_sleeper(app2.runtime)
    client2 = app2.start()
    states = [client2.wait_for_workflow_completion(i, timeout_in_seconds=WAIT) for i in ids]

    for state in states:
        assert state is not None
        assert state.runtime_status == WorkflowStatus.COMPLETED
        out = json.loads(state.serialized_output)
        assert out["fired"] >= out["fire_at"]
    assert "timerFired" in history_types(client2, ids[0])


def test_timer_pending_across_restart_fires_on_time(node: Restartable) -> None:
    app = node.app()
    _register_sleeper(app.runtime)
    client = app.start()
    iid = client.schedule_new_workflow("durable_sleeper", input=4)

    node.stop()
    node.start()
    restarted_at = time.time()
    app2 = node.app()
    _register_sleeper(app2.runtime)
    client2 = app2.start()
    state = client2.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    out = json.loads(state.serialized_output)
    assert restarted_at < out["fire_at"], "the timer fell due before the restart"
    assert out["fired"] >= out["fire_at"]  # never early


def test_scheduled_start_survives_restart(node: Restartable) -> None:
    app = node.app()

    @app.runtime.workflow(name="planned")
    def planned(ctx, _):
        return "ran"

    client = app.start()
    start_at = datetime.now(UTC) + timedelta(seconds=2)
    iid = client.schedule_new_workflow(planned, start_at=start_at)

    node.stop()
    node.start()
    app2 = node.app()

    @app2.runtime.workflow(name="planned")
    def planned_again(ctx, _):
        return "ran"

    client2 = app2.start()
    pending = client2.get_workflow_state(iid)
    state = client2.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert pending is not None and pending.runtime_status == WorkflowStatus.PENDING
    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"ran"'


def test_a_started_instance_forgets_its_scheduled_start_on_disk(node: Restartable) -> None:
    """Once a scheduled start has fired, the stored row must not hold it any more: a restart
    (perhaps on a clock that is behind) would otherwise hold a running instance back until it."""
    app = node.app()

    @app.runtime.workflow(name="planned_waiter")
    def planned_waiter(ctx, _):
        return (yield ctx.wait_for_external_event("go"))

    client = app.start()
    iid = client.schedule_new_workflow(
        planned_waiter, start_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    started = client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    assert started is not None and started.runtime_status == WorkflowStatus.RUNNING

    node.stop()
    with sqlite3.connect(node.db_path) as conn:
        recovered = load_active(conn).instances[iid]
    assert recovered.status == RUNNING
    assert recovered.scheduled_start_ns is None

    node.start()
    app2 = node.app()

    @app2.runtime.workflow(name="planned_waiter")
    def planned_waiter_again(ctx, _):
        return (yield ctx.wait_for_external_event("go"))

    client2 = app2.start()
    client2.raise_workflow_event(iid, "go", data="went")
    state = client2.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.serialized_output == '"went"'


def test_events_raised_while_no_worker_are_kept_across_restart(node: Restartable) -> None:
    app = node.app()
    _register_waiter(app.runtime)
    client = app.start()
    iid = client.schedule_new_workflow("durable_waiter", input="x")
    app.stop_runtime()
    client.raise_workflow_event(iid, "go", data="queued")

    node.stop()
    node.start()
    app2 = node.app()
    _register_waiter(app2.runtime)
    client2 = app2.start()
    state = client2.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == ["stamped:x", "queued"]


def test_memory_database_keeps_nothing(tmp_path: Path) -> None:
    first = Sidecar(db_path=":memory:", grpc_port=0)
    first.start()
    try:
        app = WorkflowApp(first.grpc_address)

        @app.runtime.workflow(name="ephemeral")
        def ephemeral(ctx, _):
            return 1

        try:
            client = app.start()
            iid = client.schedule_new_workflow(ephemeral)
            state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        finally:
            app.close()  # its runtime must not outlive the sidecar, retrying a dead port
    finally:
        first.stop()
    second = Sidecar(db_path=":memory:", grpc_port=0)
    second.start()
    try:
        app2 = WorkflowApp(second.grpc_address)
        try:
            listed = list(app2.client.iter_workflow_instance_ids())
        finally:
            app2.close()
    finally:
        second.stop()

    assert state is not None and state.runtime_status == WorkflowStatus.COMPLETED
    assert listed == []
