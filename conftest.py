"""For the whole suite: one real Zipkin server per session, and the guard that every
``WorkflowRuntime`` a test starts is stopped by the end of its teardown. One left running keeps
retrying its sidecar's port, long gone, for the rest of the run ("Connection failed, retrying in
15.00 seconds"), and the next failure it causes is blamed on some other test."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator

import pytest

from sidecar.tests.zipkin import Zipkin, zipkin_server

# dapr.ext.workflow's worker runs its work-item stream on a thread of this name.
RUN_LOOP_THREAD = "WorkerRunLoop"
# WorkflowRuntime.shutdown waits a bounded time for that thread, which ends soon after.
STOP_GRACE_SECONDS = 15.0


def _run_loops() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == RUN_LOOP_THREAD}


@pytest.fixture(autouse=True)
def _no_workflow_runtime_left_running() -> Iterator[None]:
    """Autouse, so set up before and torn down after every other fixture of the test."""
    before = _run_loops()
    yield
    left = _run_loops() - before
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {t for t in left if t.is_alive()}
    if left:
        _stop_workers_of(left)  # so the run goes on, and can end: the thread is not a daemon
    assert not left, "the test left a WorkflowRuntime running: shut it down in a finaliser"


def _stop_workers_of(threads: set[threading.Thread]) -> None:
    from dapr.ext.workflow._durabletask.worker import TaskHubGrpcWorker

    for worker in gc.get_objects():
        if isinstance(worker, TaskHubGrpcWorker) and worker._runLoop in threads:
            worker.stop()


@pytest.fixture(scope="session")
def zipkin() -> Iterator[Zipkin]:
    """zipkin-server on a free loopback port (tools/zipkin.sh; needs a JDK), for the session."""
    with zipkin_server() as server:
        yield server
