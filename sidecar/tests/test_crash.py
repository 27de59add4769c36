"""Crash tests: SIGKILL the sidecar, or the worker, in the middle of hundreds of workflows.

Both run as real processes (``python -m sidecar`` and ``sidecar.tests.worker_app``) on one
SQLite file. After the kill a fresh process takes over and every instance must finish with
exactly the output its input determines, and no timer may have fired early (the workflow
checks its own clock, see ``worker_app.crash_chain``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus

from sidecar.tests.harness import (
    free_port,
    new_client,
    spawn_sidecar,
    spawn_worker,
    stop_process,
    wait_for_port,
)
from sidecar.tests.worker_app import crash_chain_expected

pytestmark = [pytest.mark.crash, pytest.mark.timeout(240)]

INSTANCES = 200


class Cluster:
    """One sidecar process and one worker process on a fixed port and database."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.db = tmp_path / "crash.db"
        self.log = tmp_path / "sidecar.log"
        self.sidecar = self.start_sidecar()
        self.worker = spawn_worker(self.port)
        self.client = new_client(f"127.0.0.1:{self.port}")

    def start_sidecar(self):
        proc = spawn_sidecar(self.port, self.db, log=self.log)
        wait_for_port(self.port, proc)
        return proc

    def kill_sidecar_and_restart(self, *, same_port: bool, downtime: float = 0.0) -> None:
        """SIGKILL the sidecar and start a new one on the same database.

        ``same_port`` is what a user does (``--grpc-port 50001`` again); the killed process's
        connections are then still in TIME_WAIT. With a new port the worker and client move
        too (the worker is SIGKILLed as well: it cannot be told about the new port).
        """
        self.sidecar.kill()
        self.sidecar.wait(10)
        if not same_port:
            self.worker.kill()
            self.worker.wait(10)
            self.client.close()
            self.port = free_port()
        time.sleep(downtime)
        self.sidecar = self.start_sidecar()
        if not same_port:
            self.worker = spawn_worker(self.port)
            self.client = new_client(f"127.0.0.1:{self.port}")

    def close(self) -> None:
        self.client.close()
        stop_process(self.worker)
        stop_process(self.sidecar)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _schedule_all(client: DaprWorkflowClient) -> list[str]:
    def start(n: int) -> str:
        return client.schedule_new_workflow("crash_chain", input=n, instance_id=f"crash-{n:04d}")

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(start, range(INSTANCES)))


def _unfinished(client: DaprWorkflowClient, ids: list[str]) -> int:
    terminal = {WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED}
    return sum(
        1
        for i in ids
        if (s := client.get_workflow_state(i, fetch_payloads=False)) is None
        or s.runtime_status not in terminal
    )


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
    ids = _schedule_all(cluster.client)
    time.sleep(0.5)  # activities done, timers (1-3 s) pending: the middle of the flight
    unfinished = _unfinished(cluster.client, ids)

    cluster.kill_sidecar_and_restart(same_port=same_port)

    assert unfinished > INSTANCES // 2
    _assert_all_correct(cluster, ids)


@pytest.mark.parametrize("same_port", [True, False], ids=["same_port", "new_port"])
def test_crash_sidecar_sigkill_twice_while_timers_due(cluster: Cluster, same_port: bool) -> None:
    ids = _schedule_all(cluster.client)
    # Every timer falls due while the sidecar is down; then a second kill right after restart.
    cluster.kill_sidecar_and_restart(same_port=same_port, downtime=3.5)
    time.sleep(0.3)
    cluster.kill_sidecar_and_restart(same_port=same_port)

    _assert_all_correct(cluster, ids)


def test_crash_worker_sigkill_mid_flight_all_complete(cluster: Cluster) -> None:
    ids = _schedule_all(cluster.client)
    time.sleep(0.5)
    unfinished = _unfinished(cluster.client, ids)

    cluster.worker.kill()
    cluster.worker.wait(10)
    time.sleep(0.5)
    cluster.worker = spawn_worker(cluster.port)

    assert unfinished > INSTANCES // 2
    _assert_all_correct(cluster, ids)


def test_crash_worker_sigkill_while_timers_fire(cluster: Cluster) -> None:
    ids = _schedule_all(cluster.client)
    time.sleep(1.5)  # some timers have fired and their fan-out activities are in flight
    cluster.worker.kill()
    cluster.worker.wait(10)
    time.sleep(2.0)  # the rest fall due with no worker connected
    cluster.worker = spawn_worker(cluster.port)

    _assert_all_correct(cluster, ids)
