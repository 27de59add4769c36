"""Crash tests: SIGKILL the sidecar, or the worker, in the middle of hundreds of workflows.

Both run as real processes (``python -m sidecar`` and ``sidecar.tests.worker_app``) on one
SQLite file. After the kill a fresh process takes over and every instance must finish with
exactly the output its input determines, and no timer may have fired early (the workflow
checks its own clock, see ``worker_app.crash_chain``).

Where a first kill lands is decided by what the database shows, not by a sleep: the worker holds
every first activity until all instances are scheduled (``CRASH_GATE``), so the flight starts
together however slowly a busy machine schedules, and each kill waits for the stage of the
flight it is meant to hit.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus

from sidecar.engine.status import TERMINAL_STATUSES
from sidecar.tests.harness import (
    WAIT,
    free_port,
    new_client,
    spawn_sidecar,
    spawn_worker,
    stop_process,
    wait_for_port,
    wait_until,
)
from sidecar.tests.worker_app import crash_chain_expected

pytestmark = [pytest.mark.crash, pytest.mark.timeout(240)]

INSTANCES = 200


class Flight:
    """What the database shows of the instances at one moment."""

    def __init__(self, db: Path) -> None:
        # Read-only: after a SIGKILL this must not be the connection that checkpoints the
        # write-ahead log away, the next sidecar's recovery is part of what is tested.
        conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True, timeout=30)
        try:
            with conn:  # one snapshot for both counts
                conn.execute("BEGIN")
                statuses = [row[0] for row in conn.execute("SELECT status FROM instances")]
                self.waiting_on_timer, self.last_fire_at = conn.execute(
                    "SELECT COUNT(*), MAX(fire_at) FROM timers"
                ).fetchone()
        finally:
            conn.close()
        self.finished = sum(status in TERMINAL_STATUSES for status in statuses)
        self.unfinished = len(statuses) - self.finished

    def __repr__(self) -> str:
        return (
            f"Flight(unfinished={self.unfinished}, finished={self.finished},"
            f" waiting_on_timer={self.waiting_on_timer})"
        )


class Cluster:
    """One sidecar process and one worker process on a fixed port and database."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.db = tmp_path / "crash.db"
        self.log = tmp_path / "sidecar.log"
        self.gate = tmp_path / "gate"
        self.sidecar = self.start_sidecar()
        self.start_worker()
        self.client = new_client(f"127.0.0.1:{self.port}")

    def start_sidecar(self):
        proc = spawn_sidecar(self.port, self.db, log=self.log)
        wait_for_port(self.port, proc)
        return proc

    def start_worker(self) -> None:
        self.worker = spawn_worker(self.port, CRASH_GATE=str(self.gate))

    def kill_worker(self) -> None:
        """SIGKILL the worker; returns once the sidecar has seen its stream end (its log says
        so), so that what was in flight on it is handed out again."""
        assert self.worker is not None
        disconnects = self.log_count("worker disconnected")
        self.worker.kill()
        self.worker.wait(10)
        self.worker = None
        assert wait_until(lambda: self.log_count("worker disconnected") > disconnects), (
            "the sidecar never saw the killed worker's stream end"
        )

    def log_count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0

    def flight(self) -> Flight:
        return Flight(self.db)

    def wait_for_flight(self, stage: str, reached: Callable[[Flight], bool]) -> Flight:
        """Poll the database until ``reached(flight)``; fails with what it last saw."""
        last: Flight | None = None

        def check() -> bool:
            nonlocal last
            last = self.flight()
            return reached(last)

        assert wait_until(check, timeout=WAIT * 2, step=0.02), f"never {stage}: {last}"
        assert last is not None
        return last

    def kill_sidecar(self) -> None:
        self.sidecar.kill()
        self.sidecar.wait(10)

    def wait_until_due(self, flight: Flight) -> None:
        """Wait until every timer ``flight`` saw pending has fallen due."""
        assert flight.last_fire_at is not None, flight
        assert wait_until(lambda: time.time() > flight.last_fire_at, timeout=WAIT)

    def restart_sidecar(self, *, same_port: bool) -> None:
        """Start a new sidecar on the killed one's database.

        ``same_port`` is what a user does (``--grpc-port 50001`` again); the killed process's
        connections are then still in TIME_WAIT. With a new port the worker and client move
        too (the worker is SIGKILLed as well: it cannot be told about the new port).
        """
        if not same_port:
            self.worker.kill()  # the sidecar it talked to is dead: nobody sees it go
            self.worker.wait(10)
            self.worker = None
            self.client.close()
            self.port = free_port()
        self.sidecar = self.start_sidecar()
        if not same_port:
            self.start_worker()
            self.client = new_client(f"127.0.0.1:{self.port}")

    def close(self) -> None:
        self.client.close()
        if self.worker is not None:
            stop_process(self.worker)
        stop_process(self.sidecar)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _schedule_all_then_open_gate(cluster: Cluster) -> list[str]:
    """Schedule every instance, then let their first activities run: no instance can be done
    before a timer (1-3 s) after the gate opens, however long scheduling took."""

    def start(n: int) -> str:
        return cluster.client.schedule_new_workflow(
            "crash_chain", input=n, instance_id=f"crash-{n:04d}"
        )

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(start, range(INSTANCES)))
    cluster.gate.touch()
    return ids


def _many_waiting_on_timers(flight: Flight) -> bool:
    """Activities done for a tenth of the instances and their timers (1-3 s) pending (a slow
    machine reaches fewer at once: they pile up at about twice its workflow steps per second)."""
    return flight.waiting_on_timer >= INSTANCES // 10


def _assert_all_correct(cluster: Cluster, ids: list[str]) -> None:
    try:
        _assert_outputs(cluster.client, ids)
    except BaseException:
        print("sidecar log (tail):\n" + cluster.log.read_text(errors="replace")[-20000:])
        raise


def _assert_outputs(client: DaprWorkflowClient, ids: list[str]) -> None:
    wrong = []
    for n, iid in enumerate(ids):
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=90)
        output = json.loads(state.serialized_output) if state and state.serialized_output else None
        if (
            state is None
            or state.runtime_status != WorkflowStatus.COMPLETED
            or output != crash_chain_expected(n)
        ):
            wrong.append((iid, state.runtime_status if state else None, output))
    assert wrong == []


@pytest.mark.parametrize("same_port", [True, False], ids=["same_port", "new_port"])
def test_crash_sidecar_sigkill_mid_flight_all_complete(cluster: Cluster, same_port: bool) -> None:
    ids = _schedule_all_then_open_gate(cluster)
    cluster.wait_for_flight("many waiting on timers", _many_waiting_on_timers)

    cluster.kill_sidecar()
    at_kill = cluster.flight()  # exactly what the dead sidecar left on disk
    cluster.restart_sidecar(same_port=same_port)

    assert at_kill.unfinished > INSTANCES // 2, at_kill
    _assert_all_correct(cluster, ids)


@pytest.mark.parametrize("same_port", [True, False], ids=["same_port", "new_port"])
def test_crash_sidecar_sigkill_twice_while_timers_due(cluster: Cluster, same_port: bool) -> None:
    ids = _schedule_all_then_open_gate(cluster)
    cluster.wait_for_flight("many waiting on timers", _many_waiting_on_timers)
    # Every pending timer falls due while the sidecar is down; then a second kill right after
    # the restart, once the first of them are delivered and before the workflows are done.
    cluster.kill_sidecar()
    at_kill = cluster.flight()
    cluster.wait_until_due(at_kill)
    cluster.restart_sidecar(same_port=same_port)
    cluster.wait_for_flight(
        "delivering the due timers", lambda f: f.waiting_on_timer < at_kill.waiting_on_timer
    )
    cluster.kill_sidecar()
    at_second_kill = cluster.flight()
    cluster.restart_sidecar(same_port=same_port)

    assert at_kill.waiting_on_timer > 0, at_kill
    assert at_second_kill.unfinished > 0, at_second_kill
    _assert_all_correct(cluster, ids)


def test_crash_worker_sigkill_mid_flight_all_complete(cluster: Cluster) -> None:
    ids = _schedule_all_then_open_gate(cluster)
    before_kill = cluster.wait_for_flight("many waiting on timers", _many_waiting_on_timers)

    cluster.kill_worker()
    cluster.start_worker()

    assert before_kill.unfinished > INSTANCES // 2, before_kill
    _assert_all_correct(cluster, ids)


def test_crash_worker_sigkill_while_timers_fire(cluster: Cluster) -> None:
    ids = _schedule_all_then_open_gate(cluster)
    # Some timers have fired (1 s timers: those workflows are done or in their fan-out) while
    # the 2-3 s ones are pending.
    before_kill = cluster.wait_for_flight("some finished", lambda f: f.finished >= 10)
    cluster.kill_worker()
    # The rest fall due, and are delivered, with no worker connected.
    cluster.wait_for_flight("every timer fired", lambda f: f.waiting_on_timer == 0)
    cluster.start_worker()

    assert before_kill.waiting_on_timer > 0, before_kill
    _assert_all_correct(cluster, ids)
