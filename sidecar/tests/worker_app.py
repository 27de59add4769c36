"""A workflow application run as its own process: ``python -m sidecar.tests.worker_app``.

Crash tests SIGKILL it (or the sidecar) mid-flight and start a fresh copy; it must therefore
keep nothing but what the sidecar stores. It connects to ``DAPR_GRPC_PORT`` like any app
written against ``dapr.ext.workflow`` would, and runs until SIGTERM/SIGINT.

Workflows here are deterministic functions of their input, so a test can compute every
expected output without knowing how often an activity ran (activities are at-least-once).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import timedelta

from dapr.ext.workflow import DaprWorkflowContext, WorkflowRuntime, when_all

# Longer than any crash test takes to schedule its instances (their per-test timeout is 240 s).
GATE_TIMEOUT_SECONDS = 240


def crash_chain_expected(n: int) -> dict[str, object]:
    """The output ``crash_chain`` must produce for input ``n``."""
    doubled = n * 2
    return {"n": n, "doubled": doubled, "fanned": [doubled + i for i in range(3)], "early": False}


def _wait_for_gate() -> None:
    """Hold while ``CRASH_GATE`` names a file that does not exist yet.

    The crash tests open the gate once every instance is scheduled (scheduling waits for each
    workflow's first turn, so it needs the worker), and the flight starts together from there.
    """
    gate = os.environ.get("CRASH_GATE")
    deadline = time.monotonic() + GATE_TIMEOUT_SECONDS
    while gate and not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never opened the gate {gate}")
        time.sleep(0.01)


def build_runtime() -> WorkflowRuntime:
    runtime = WorkflowRuntime()

    @runtime.activity(name="crash_double")
    def crash_double(ctx, n: int) -> int:
        _wait_for_gate()
        return n * 2

    @runtime.activity(name="crash_add")
    def crash_add(ctx, pair: list[int]) -> int:
        return pair[0] + pair[1]

    @runtime.workflow(name="crash_chain")
    def crash_chain(ctx: DaprWorkflowContext, n: int):
        doubled = yield ctx.call_activity(crash_double, input=n)
        seconds = 1 + n % 3
        before = ctx.current_utc_datetime
        yield ctx.create_timer(timedelta(seconds=seconds))
        # The workflow clock after the timer is the dispatch time of timerFired: earlier than
        # before + seconds would mean the timer fired early.
        early = ctx.current_utc_datetime < before + timedelta(seconds=seconds)
        fanned = yield when_all(
            [ctx.call_activity(crash_add, input=[doubled, i]) for i in range(3)]
        )
        return {"n": n, "doubled": doubled, "fanned": fanned, "early": early}

    @runtime.workflow(name="suspendable")
    def suspendable(ctx: DaprWorkflowContext, _):
        return (yield ctx.wait_for_external_event("my_event"))

    return runtime


def main() -> int:
    runtime = build_runtime()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runtime.start()
    print("worker ready", flush=True)
    stop.wait()
    runtime.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
