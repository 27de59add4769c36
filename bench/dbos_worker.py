"""One DBOS process: ``python -m bench.dbos_worker --db sqlite:///PATH --executor-id ID``.

DBOS is a library: the process that starts a workflow also runs it, and the system database
(here DBOS's SQLite one) is where it commits every step before going on. This process launches
DBOS with the same order shape as bench/workload.py (a workflow of five chained steps), prints
``ready``, then obeys JSON commands, one a line on stdin, answering one JSON line on stdout:

* ``{"cmd": "sequential", "n": 200}``: start a workflow and wait for its result, one at a time;
  answers ``{"latencies": [seconds, ...]}`` (start_workflow call to result).
* ``{"cmd": "throughput", "n": N, "inflight": C, "start_at": unix_time}``: from start_at on,
  keep C workflows in flight (start, wait for the result, start the next) until N completed;
  answers ``{"first": t, "last": t, "done": n, "errors": [...], "latencies": [...]}`` (unix
  times; one message per failed workflow).
* ``{"cmd": "exit"}`` or end of input: destroy DBOS and exit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dbos import DBOS


def define_workflow() -> Any:
    @DBOS.step(name="notify")
    def notify(note: dict[str, Any]) -> None:
        return None

    @DBOS.step(name="verify_inventory")
    def verify_inventory(order: dict[str, Any]) -> dict[str, Any]:
        return {"success": True, "item_name": order["item_name"]}

    @DBOS.step(name="process_payment")
    def process_payment(order: dict[str, Any]) -> dict[str, Any]:
        return {"paid": order["total_cost"]}

    @DBOS.step(name="update_inventory")
    def update_inventory(order: dict[str, Any]) -> dict[str, Any]:
        return {"updated": order["quantity"]}

    @DBOS.workflow(name="bench_order")
    def bench_order(order: dict[str, Any]) -> dict[str, bool]:
        order_id = DBOS.workflow_id
        notify({"order_id": order_id, "step": "received"})
        stock = verify_inventory(order)
        if not stock["success"]:
            return {"processed": False}
        process_payment(order)
        update_inventory(order)
        notify({"order_id": order_id, "step": "completed"})
        return {"processed": True}

    return bench_order


def order_input(i: int) -> dict[str, Any]:
    return {"item_name": "Cars", "quantity": 1 + i % 3, "total_cost": "5000"}


def run_one(workflow: Any, i: int) -> None:
    result = DBOS.start_workflow(workflow, order_input(i)).get_result()
    if result != {"processed": True}:
        raise RuntimeError(f"unexpected result {result!r}")


def sequential(workflow: Any, n: int) -> dict[str, Any]:
    latencies = []
    for i in range(n):
        began = time.perf_counter()
        run_one(workflow, i)
        latencies.append(time.perf_counter() - began)
    return {"latencies": latencies}


def throughput(workflow: Any, n: int, inflight: int, start_at: float) -> dict[str, Any]:
    counter = itertools.count()
    lock = threading.Lock()
    errors: list[str] = []
    latencies: list[float] = []
    done = 0

    def lane() -> None:
        nonlocal done
        while True:
            i = next(counter)
            if i >= n:
                return
            began = time.perf_counter()
            try:
                run_one(workflow, i)
            except Exception as exc:  # reported, not raised: the bench counts errors
                with lock:
                    errors.append(f"{i}: {exc!r}"[:300])
                continue
            elapsed = time.perf_counter() - began
            with lock:
                done += 1
                latencies.append(elapsed)

    time.sleep(max(0.0, start_at - time.time()))
    first = time.time()
    with ThreadPoolExecutor(max_workers=inflight, thread_name_prefix="bench-lane") as pool:
        for future in [pool.submit(lane) for _ in range(inflight)]:
            future.result()
    last = time.time()
    return {
        "first": first,
        "last": last,
        "done": done,
        "errors": errors,
        "latencies": latencies,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_worker")
    parser.add_argument("--db", required=True, help="system database URL, sqlite:///PATH")
    parser.add_argument("--executor-id", default="bench-0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    DBOS(
        config={
            "name": "bench",
            "system_database_url": args.db,
            "executor_id": args.executor_id,
            "log_level": "WARNING",
        }
    )
    workflow = define_workflow()
    DBOS.launch()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            cmd = command["cmd"]
            if cmd == "exit":
                break
            if cmd == "sequential":
                answer = sequential(workflow, int(command["n"]))
            elif cmd == "throughput":
                answer = throughput(
                    workflow,
                    int(command["n"]),
                    int(command["inflight"]),
                    float(command.get("start_at", 0)),
                )
            else:
                answer = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(answer), flush=True)
    finally:
        DBOS.destroy(workflow_completion_timeout_sec=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
