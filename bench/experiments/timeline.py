"""Where one sequential workflow's time goes: ``python -m bench.experiments.timeline``.

Runs the backend (the embedded sidecar, or ``--floor`` the SDK floor) in this process with its
gRPC methods wrapped to note when each call arrives and returns and when each work item is
handed to the worker's stream; one worker process (``bench.dapr_worker``); then workflows one
at a time from this process's client. Prints the median time of every mark from the client's
schedule call, so a hop's cost can be read as the worker's (work item sent -> its completion
arrives) or the backend's (completion arrives -> next work item sent / answer returned).

The client and the backend share this process (and its GIL), which adds a little to both;
compare the sidecar with the floor measured the same way, not with the main table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from bench import dapr_runs, workload
from bench.util import PYTHON, free_port, spawn, stop_process, wait_line, wait_port

TIMED_CALLS = (
    "StartInstance",
    "WaitForInstanceCompletion",
    "CompleteOrchestratorTask",
    "CompleteActivityTask",
)


class Marks:
    """Timestamps per instance id, in arrival order."""

    def __init__(self) -> None:
        self.by_instance: dict[str, list[tuple[str, float]]] = defaultdict(list)

    def add(self, instance_id: str, what: str) -> None:
        self.by_instance[instance_id].append((what, time.perf_counter()))


class _TimedContext:
    """A servicer context whose ``write`` notes each work item before sending it."""

    def __init__(self, context: Any, marks: Marks) -> None:
        self._context = context
        self._marks = marks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def write(self, item: Any) -> None:
        if item.HasField("workflowRequest"):
            self._marks.add(item.workflowRequest.instanceId, "work item sent: turn")
        else:
            instance_id = item.activityRequest.workflowInstance.instanceId
            self._marks.add(instance_id, "work item sent: activity")
        await self._context.write(item)


def instrument(servicer_class: type, marks: Marks) -> None:
    """Wrap the servicer's methods so every call and work item leaves a mark."""
    for name in TIMED_CALLS:
        original = getattr(servicer_class, name)

        def timed(original: Any = original, name: str = name) -> Any:
            async def method(self: Any, request: Any, context: Any) -> Any:
                marks.add(request.instanceId, f"{name} arrives")
                response = await original(self, request, context)
                marks.add(request.instanceId, f"{name} returns")
                return response

            return method

        setattr(servicer_class, name, timed())
    stream = servicer_class.GetWorkItems

    async def get_work_items(self: Any, request: Any, context: Any) -> Any:
        return await stream(self, request, _TimedContext(context, marks))

    servicer_class.GetWorkItems = get_work_items


def start_backend(floor: bool, db: str, port: int, marks: Marks) -> Any:
    if floor:
        from bench import sdk_floor

        instrument(sdk_floor.FloorServicer, marks)
        threading.Thread(target=sdk_floor.main, args=(["--port", str(port)],), daemon=True).start()
        return None
    from sidecar import taskhub
    from sidecar.server import Sidecar

    instrument(taskhub.TaskHubServicer, marks)
    return Sidecar(db, grpc_port=port).start()


def median_timeline(runs: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """Median offset of each mark from the run's first; runs whose marks differ are left out."""
    shape = [what for what, _ in runs[0]]
    same = [r for r in runs if [what for what, _ in r] == shape]
    return [
        (what, statistics.median(1000 * (r[i][1] - r[0][1]) for r in same))
        for i, what in enumerate(shape)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.timeline")
    parser.add_argument("--floor", action="store_true", help="the SDK floor, not the sidecar")
    parser.add_argument("--db", default=":memory:", help="the sidecar's database (:memory:)")
    parser.add_argument("-n", type=int, default=150, help="workflows measured (150)")
    args = parser.parse_args(argv)
    marks = Marks()
    port = free_port()
    sidecar = start_backend(args.floor, args.db, port, marks)
    wait_port(port, None, timeout=30)
    worker = spawn(
        [PYTHON, "-m", "bench.dapr_worker", "--port", str(port)],
        sys.stderr,
        stdin=True,
        stdout_pipe=True,
    )
    try:
        wait_line(worker, "ready")
        ids = [f"timeline-{i}" for i in range(args.n)]

        async def run(client: Any) -> None:
            await dapr_runs.sequential(client, "warm", 20)
            for instance_id in ids:
                began = time.perf_counter()
                await dapr_runs.run_one(
                    client, instance_id, workload.ORDER_WORKFLOW, workload.order_input(0)
                )
                marks.by_instance[instance_id].insert(0, ("client schedules", began))
                marks.add(instance_id, "client sees the completion")

        dapr_runs.run(run, port)
    finally:
        stop_process(worker)
        if sidecar is not None:
            sidecar.stop()
    backend = "SDK floor" if args.floor else f"sidecar (--db {args.db})"
    print(f"{backend}: median of {args.n} sequential order workflows, ms from the schedule call")
    previous = 0.0
    for what, at in median_timeline([marks.by_instance[i] for i in ids]):
        print(f"  {at:7.2f}  (+{at - previous:5.2f})  {what}")
        previous = at
    return 0


if __name__ == "__main__":
    sys.exit(main())
