"""The embedded sidecar under load: its own process, 1..n worker processes, the client here.

``python -m sidecar`` runs alone so its CPU time and RSS are its own; each worker is
``python -m bench.dapr_worker`` (dapr.ext.workflow's WorkflowRuntime); the client is
dapr.ext.workflow's asyncio DaprWorkflowClient in the benchmark process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from dapr.ext.workflow import WorkflowStatus
from dapr.ext.workflow.aio import DaprWorkflowClient

from bench import workload
from bench.util import (
    PYTHON,
    BenchError,
    free_port,
    peak_rss_mb,
    spawn,
    stop_process,
    wait_line,
    wait_port,
)

WAIT_TIMEOUT_S = 300


def start_worker(port: int, log: IO[Any]) -> Any:
    """A ``python -m bench.dapr_worker`` process connected to 127.0.0.1:``port``, once it is
    ready; it stops when its standard input closes."""
    proc = spawn(
        [PYTHON, "-m", "bench.dapr_worker", "--port", str(port)], log, stdin=True, stdout_pipe=True
    )
    try:
        wait_line(proc, "ready")
    except BaseException:
        stop_process(proc)
        raise
    return proc


@dataclass
class SidecarSystem:
    """A sidecar process and its worker processes; start() returns once all are serving, and
    the ``with`` block stops them.

    ``floor=True`` runs ``bench.sdk_floor`` (a backend that does almost nothing) in the
    sidecar's place, to measure the SDK on its own. ``sidecar_args`` are added to the
    sidecar's command line (e.g. ``--commit-delay-ms=0``).
    """

    db: str
    workers: int
    log: IO[Any]
    floor: bool = False
    sidecar_args: list[str] = field(default_factory=list)
    port: int = 0
    started_in_s: float = 0.0
    sidecar: Any = None
    worker_procs: list[Any] = field(default_factory=list)

    def start(self) -> SidecarSystem:
        """Start the processes (all stopped again if one fails to start)."""
        self.port = free_port()
        began = time.perf_counter()
        if self.floor:
            command = [PYTHON, "-m", "bench.sdk_floor", "--port", str(self.port)]
        else:
            command = [PYTHON, "-m", "sidecar", "--grpc-port", str(self.port), "--db", self.db]
            command += ["--metrics-port", "off"]  # rows with metrics say so in sidecar_args
            command += ["--log-level", "warning", *self.sidecar_args]
        try:
            self.sidecar = spawn(command, self.log)
            wait_port(self.port, self.sidecar, timeout=600)
            self.started_in_s = time.perf_counter() - began
            for _ in range(self.workers):
                self.add_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self) -> None:
        self.worker_procs.append(start_worker(self.port, self.log))

    def check_alive(self) -> None:
        for proc in [self.sidecar, *self.worker_procs]:
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"{proc.args!r} exited with {proc.returncode} during the run")

    def pids(self) -> dict[str, list[int]]:
        return {"sidecar": [self.sidecar.pid], "workers": [p.pid for p in self.worker_procs]}

    def peak_rss(self) -> dict[str, Any]:
        return {
            "sidecar": round(peak_rss_mb(self.sidecar.pid), 1),
            "workers": [round(peak_rss_mb(p.pid), 1) for p in self.worker_procs],
        }

    def stop(self) -> None:
        for proc in self.worker_procs:
            stop_process(proc)
        if self.sidecar is not None:
            stop_process(self.sidecar)

    def __enter__(self) -> SidecarSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def client_for(port: int) -> DaprWorkflowClient:
    return DaprWorkflowClient(host="127.0.0.1", port=str(port))


async def run_one(client: DaprWorkflowClient, instance_id: str, workflow: str, inp: Any) -> float:
    """Schedule one workflow and wait for it; return schedule-to-completion seconds."""
    began = time.perf_counter()
    await client.schedule_new_workflow(workflow, input=inp, instance_id=instance_id)
    state = await client.wait_for_workflow_completion(
        instance_id, fetch_payloads=False, timeout_in_seconds=WAIT_TIMEOUT_S
    )
    elapsed = time.perf_counter() - began
    if state is None or state.runtime_status != WorkflowStatus.COMPLETED:
        status = None if state is None else state.runtime_status.name
        raise BenchError(f"workflow {instance_id} ended {status}, not COMPLETED")
    return elapsed


async def sequential(
    client: DaprWorkflowClient,
    prefix: str,
    n: int,
    workflow: str = workload.ORDER_WORKFLOW,
    make_input: Callable[[int], Any] = workload.order_input,
) -> list[float]:
    return [await run_one(client, f"{prefix}-{i}", workflow, make_input(i)) for i in range(n)]


@dataclass
class LoadResult:
    done: int
    elapsed_s: float
    latencies: list[float]
    errors: list[str]

    @property
    def throughput(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def closed_loop(
    client: DaprWorkflowClient,
    prefix: str,
    n: int,
    inflight: int,
    workflow: str = workload.ORDER_WORKFLOW,
    make_input: Callable[[int], Any] = workload.order_input,
    on_done: Callable[[int], None] | None = None,
) -> LoadResult:
    """Keep ``inflight`` workflows in flight until ``n`` completed: first schedule to last
    completion."""
    next_index = iter(range(n))
    latencies: list[float] = []
    errors: list[str] = []

    async def lane() -> None:
        for i in next_index:
            try:
                latencies.append(await run_one(client, f"{prefix}-{i}", workflow, make_input(i)))
            except Exception as exc:  # counted, the run goes on; errors fail the bench later
                errors.append(f"{prefix}-{i}: {exc!r}"[:300])
                continue
            if on_done is not None:
                on_done(len(latencies))

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(inflight, n))))
    return LoadResult(len(latencies), time.perf_counter() - began, latencies, errors)


async def purge_all(client: DaprWorkflowClient, ids: list[str], concurrency: int = 32) -> int:
    it = iter(ids)
    purged = 0

    async def lane() -> None:
        nonlocal purged
        for instance_id in it:
            with contextlib.suppress(Exception):
                await client.purge_workflow(instance_id)
                purged += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return purged


def run(coro_factory: Callable[[DaprWorkflowClient], Any], port: int) -> Any:
    """Run ``coro_factory(client)`` on a fresh event loop with a fresh client."""

    async def main() -> Any:
        client = client_for(port)
        try:
            return await coro_factory(client)
        finally:
            # The asyncio client has no public close(); its inner durabletask client does.
            inner = getattr(client, "_DaprWorkflowClient__obj", None)
            with contextlib.suppress(Exception):
                await inner.aclose()

    return asyncio.run(main())
