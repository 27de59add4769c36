"""``python -m bench`` (``make bench``): the main comparison and, with ``--scale``, the scale
checks (docs/performance.md). Prints the figures and writes them as JSON to bench/results/.
Exits non-zero only when something failed: a process died or a workflow did not complete."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import comparison, daprd_runs, scale
from bench.util import REPO, BenchError, machine

# option: (default, with --quick)
SIZES = {
    "workflows": (3000, 300),
    "inflight": (200, 100),
    "sequential": (200, 40),
    "warmup": (30, 10),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    configs = ", ".join(comparison.CONFIGURATIONS)
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Order-shaped workflows (5 chained activities) through dapr.ext.workflow on "
        "the embedded sidecar (durable and in-memory), on the SDK floor (a backend doing "
        "nothing) and on real daprd, and through DBOS on SQLite.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a ~1 minute smoke run")
    p.add_argument(
        "--main", action="store_true", help="the main comparison (the default without --scale)"
    )
    p.add_argument("--only", help=f"comma-separated configurations of --main: {configs}")
    p.add_argument("--workers", default="1,2", help="worker process counts (default 1,2)")
    p.add_argument("-n", "--workflows", type=int, help="workflows per throughput run (3000)")
    p.add_argument(
        "--inflight", type=int, help="workflows kept in flight when measuring throughput (200)"
    )
    p.add_argument("--sequential", type=int, help="workflows run one at a time for latency (200)")
    p.add_argument("--warmup", type=int, help="unmeasured workflows first (30)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every configuration this many times, every other round backwards; the "
        "table shows medians",
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="scale checks: 100k-instance database, 1000-step chain, 20k-workflow memory run, purge",
    )
    p.add_argument("--scale-only", help="comma-separated scale checks: " + ", ".join(scale.CHECKS))
    p.add_argument(
        "--scale-rounds",
        type=int,
        default=1,
        help="alternate empty/big database runs this many times; the best of each counts",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary databases and logs")
    p.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)
    args.scale_only = [x.strip() for x in args.scale_only.split(",")] if args.scale_only else []
    for check in args.scale_only:
        if check not in scale.CHECKS:
            p.error(
                f"--scale-only: unknown check {check!r} (choose from {', '.join(scale.CHECKS)})"
            )
    args.scale = args.scale or bool(args.scale_only)
    args.main = args.main or not args.scale
    args.only = (
        [c.strip() for c in args.only.split(",")] if args.only else list(comparison.CONFIGURATIONS)
    )
    for config in args.only:
        if config not in comparison.CONFIGURATIONS:
            p.error(f"--only: unknown configuration {config!r} (choose from {configs})")
    args.worker_counts = [int(w) for w in args.workers.split(",")]
    for name, (default, quick) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (REPO / "var").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{stamp}-", dir=REPO / "var"))
    began = time.perf_counter()
    out: dict[str, Any] = {
        "started_at": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "sizes": {name: getattr(args, name) for name in SIZES} | {"activities_per_workflow": 5},
        "machine": machine(workdir) | {"daprd": daprd_runs.daprd_version()},
    }
    m = out["machine"]
    print(
        f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['memory_gb']} GiB, "
        f"{m['os']}, Python {m['python']}, SQLite {m['sqlite']}, dapr {m['dapr']}, "
        f"daprd {m['daprd']}, dbos {m['dbos']}; fsync p50 {m['fsync_ms_p50']} ms; load average "
        f"{m['loadavg_at_start']}"
    )
    print(f"databases and process logs in {workdir}", flush=True)
    with open(workdir / "processes.log", "a") as log:
        try:
            if args.main:
                comparison.suite(args, workdir, log, out)
            if args.scale:
                scale.suite(args, workdir, log, out)
        except KeyboardInterrupt:
            out.setdefault("failures", []).append("interrupted")
        except BenchError as exc:
            out.setdefault("failures", []).append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["duration_s"] = round(time.perf_counter() - began, 1)
    path = results_dir / f"{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print()
    print(json.dumps(out, indent=2))
    print(f"\nwritten to {path} ({out['duration_s']} s)")
    failures = out.get("failures", [])
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        print(f"process logs and databases kept: {workdir}", file=sys.stderr)
        return 1
    if not args.keep:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
