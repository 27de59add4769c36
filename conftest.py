"""Suite-wide guard: a test must not leave a workflow runtime running.

The SDK's worker runs its loop on a non-daemon thread (``WorkerRunLoop``). One that outlives its
test keeps retrying a sidecar that is gone, and keeps pytest's process alive after the last test,
so a CI run would hang until its time limit instead of failing. This fixture fails the test that
leaked it, by name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

RUN_LOOP = "WorkerRunLoop"


def _run_loops() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == RUN_LOOP and t.is_alive()}


@pytest.fixture(autouse=True)
def _no_leaked_workflow_runtime() -> Iterator[None]:
    before = _run_loops()
    yield
    deadline = time.monotonic() + 10
    while (leaked := _run_loops() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leaked, (
        f"this test left {len(leaked)} workflow runtime(s) running: call shutdown() on every "
        "WorkflowRuntime it starts, on every path"
    )
