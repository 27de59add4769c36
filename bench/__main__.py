"""``python -m bench``: the embedded sidecar against its in-memory store and DBOS (see
docs/performance.md). Exits non-zero only when something failed, never for a missed target."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import psutil

from bench import dapr_runs, report
from bench.util import REPO, BenchError, CpuMark, machine, percentile

CONFIGS = ("sidecar-durable", "sidecar-memory", "sdk-floor", "dbos", "dbos-wal")
LABELS = {
    "sidecar-durable": "sidecar, SQLite file (durable)",
    "sidecar-memory": "sidecar, --db :memory: (reference)",
    "sdk-floor": "SDK floor: a backend doing nothing",
    "dbos": "DBOS 3.x, SQLite as DBOS sets it up",
    "dbos-wal": "DBOS 3.x, SQLite switched to WAL",
}
# DBOS's SQLite journal per configuration: "default" leaves DBOS's own choice (a rollback
# journal); "wal" switches the file to WAL first, as the sidecar's store is.
DBOS_JOURNALS = {"dbos": "default", "dbos-wal": "wal"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Order-shaped workflows (5 chained activities) through dapr.ext.workflow on "
        "the embedded sidecar (durable and in-memory) and through DBOS on SQLite.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a ~1 minute smoke run")
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated configurations of the main comparison: {', '.join(CONFIGS)}",
    )
    p.add_argument("--workers", default="1,2", help="worker process counts (default 1,2)")
    p.add_argument(
        "-n",
        "--workflows",
        type=int,
        default=None,
        help="workflows per throughput run (default 3000; quick 300)",
    )
    p.add_argument(
        "--inflight",
        type=int,
        default=None,
        help="workflows kept in flight in throughput runs (default 200; quick 100)",
    )
    p.add_argument(
        "--sequential",
        type=int,
        default=None,
        help="workflows run one at a time for latency (default 200; quick 40)",
    )
    p.add_argument("--warmup", type=int, default=None, help="unmeasured workflows first (30)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every configuration this many times, interleaved; the table shows medians",
    )
    p.add_argument(
        "--main",
        action="store_true",
        help="the main comparison (the default when neither --scale nor --web is given)",
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="scale checks: 100k-instance database, 1000-step chain, 20k-workflow "
        "memory run, purge",
    )
    p.add_argument(
        "--scale-only",
        default=None,
        help="comma-separated scale checks: big_database, chains, memory",
    )
    p.add_argument(
        "--scale-rounds",
        type=int,
        default=1,
        help="alternate empty/big database runs this many times; the best of each counts",
    )
    p.add_argument(
        "--web",
        action="store_true",
        help="the order page's status partial under gunicorn, 50 pollers (needs wrk)",
    )
    p.add_argument(
        "--web-workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY") or 2),
        help="gunicorn workers for --web (default WEB_CONCURRENCY or 2, as the Procfile)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the sidecar during a separate durable throughput run",
    )
    p.add_argument(
        "--profile-workers",
        type=int,
        default=1,
        help="worker processes in the --profile run (default 1)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary databases and logs")
    p.add_argument("--results-dir", default=str(REPO / "bench" / "results"))
    args = p.parse_args(argv)
    if args.scale_only:
        args.scale = True
    if not (args.main or args.scale or args.web):
        args.main = True
    args.only = [c.strip() for c in args.only.split(",")] if args.only else list(CONFIGS)
    for c in args.only:
        if c not in CONFIGS:
            p.error(f"--only: unknown configuration {c!r} (choose from {', '.join(CONFIGS)})")
    if args.scale_only:
        args.scale_only = [x.strip() for x in args.scale_only.split(",")]
    args.worker_counts = [int(w) for w in args.workers.split(",")]
    quick = args.quick
    args.workflows = args.workflows or (300 if quick else 3000)
    args.inflight = args.inflight or (100 if quick else 200)
    args.sequential = args.sequential or (40 if quick else 200)
    args.warmup = args.warmup if args.warmup is not None else (10 if quick else 30)
    return args


def busy_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


def ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 2) if values else None


class Measure:
    """CPU of our processes by role, and of everything else on the machine, over a phase."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids

    def __enter__(self) -> Measure:
        self.wall = time.perf_counter()
        self.busy = busy_cpu_seconds()
        self.mark = CpuMark.take(self.pids)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = CpuMark.take(self.pids).since(self.mark)
        self.elapsed = time.perf_counter() - self.wall
        ours = sum(self.cpu.values())
        self.other_cores = max(0.0, (busy_cpu_seconds() - self.busy - ours) / self.elapsed)


def run_sidecar(
    config: str, workers: int, args: argparse.Namespace, workdir: Path, log: Any
) -> dict[str, Any]:
    db = ":memory:" if config == "sidecar-memory" else str(workdir / f"{config}-{workers}.db")
    floor = config == "sdk-floor"
    with dapr_runs.SidecarSystem(db=db, workers=workers, log=log, floor=floor).start() as system:
        port = system.port
        warm = dapr_runs.run(
            lambda c: dapr_runs.closed_loop(
                c, "warm", args.warmup, max(1, min(args.warmup, args.inflight))
            ),
            port,
        )
        seq = dapr_runs.run(lambda c: dapr_runs.sequential(c, "seq", args.sequential), port)
        system.check_alive()
        pids = {**system.pids(), "client": [os.getpid()]}
        with Measure(pids) as m:
            load = dapr_runs.run(
                lambda c: dapr_runs.closed_loop(c, "tp", args.workflows, args.inflight), port
            )
        system.check_alive()
        rss = system.peak_rss()
    n = max(1, load.done)
    cpu = {role: round(sec * 1000 / n, 2) for role, sec in m.cpu.items()}
    errors = warm.errors + load.errors
    return {
        "config": config,
        "label": LABELS[config],
        "workers": workers,
        "throughput_wps": round(load.throughput, 1),
        "workflows": load.done,
        "inflight": args.inflight,
        "elapsed_s": round(load.elapsed_s, 2),
        "seq_n": len(seq),
        "seq_p50_ms": ms(seq, 50),
        "seq_p99_ms": ms(seq, 99),
        "load_p50_ms": ms(load.latencies, 50),
        "load_p99_ms": ms(load.latencies, 99),
        "cpu_ms_per_wf": {
            "engine": cpu["sidecar"],
            "workers": cpu["workers"],
            "client": cpu["client"],
            "total": round(sum(cpu.values()), 2),
        },
        "peak_rss_mb": {"engine": rss["sidecar"], "workers": rss["workers"]},
        "sidecar_start_s": round(system.started_in_s, 2),
        "other_load_cores": round(m.other_cores, 2),
        "errors": len(errors),
        "error_samples": errors[:3],
    }


def profile_sidecar(args: argparse.Namespace, workdir: Path, log: Any) -> dict[str, Any] | None:
    """A separate durable throughput run (``--profile-workers`` workers) with py-spy sampling
    the sidecar (native frames included), so the profiler's pauses never touch the table."""
    from bench.profile import Profiler

    db = str(workdir / "profile.db")
    with dapr_runs.SidecarSystem(db=db, workers=args.profile_workers, log=log).start() as system:
        port = system.port
        dapr_runs.run(
            lambda c: dapr_runs.closed_loop(
                c, "warm", args.warmup, max(1, min(args.warmup, args.inflight))
            ),
            port,
        )
        profiler = Profiler(system.sidecar.pid, args.profile_out, log)
        if not profiler.start():
            return None
        load = dapr_runs.run(
            lambda c: dapr_runs.closed_loop(c, "tp", args.workflows, args.inflight), port
        )
        summary = profiler.stop()
        system.check_alive()
    if summary is not None:
        summary["raw"] = str(args.profile_out)
        summary["throughput_wps_while_profiled"] = round(load.throughput, 1)
    return summary


def run_dbos(
    config: str, workers: int, args: argparse.Namespace, workdir: Path, log: Any
) -> dict[str, Any]:
    from bench.dbos_runs import DbosSystem

    journal = DBOS_JOURNALS[config]
    db_file = workdir / f"{config}-{workers}.sqlite"
    with DbosSystem(db_file, workers, log, journal=journal).start() as system:
        system.warmup(max(1, args.warmup // workers))
        seq = system.sequential(args.sequential)
        with Measure(system.pids()) as m:
            load = system.throughput(args.workflows, args.inflight)
        system.check_alive()
        rss = system.peak_rss()
    n = max(1, load["done"])
    cpu_workers = round(m.cpu["workers"] * 1000 / n, 2)
    return {
        "config": config,
        "label": LABELS[config],
        "workers": workers,
        "throughput_wps": round(load["done"] / load["elapsed_s"], 1),
        "workflows": load["done"],
        "inflight": args.inflight,
        "elapsed_s": round(load["elapsed_s"], 2),
        "seq_n": len(seq),
        "seq_p50_ms": ms(seq, 50),
        "seq_p99_ms": ms(seq, 99),
        "load_p50_ms": ms(load["latencies"], 50),
        "load_p99_ms": ms(load["latencies"], 99),
        "cpu_ms_per_wf": {
            "engine": None,
            "workers": cpu_workers,
            "client": None,
            "total": cpu_workers,
        },
        "peak_rss_mb": {"engine": None, "workers": rss["workers"]},
        "journal": journal,
        "other_load_cores": round(m.other_cores, 2),
        "errors": load["errors"],
        "error_samples": load["error_samples"],
    }


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several rounds of a configuration: the median of every figure."""
    if len(runs) == 1:
        return runs[0]

    def med(values: list[Any]) -> Any:
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 2) if values else None

    merged = dict(runs[0])
    for key in (
        "throughput_wps",
        "seq_p50_ms",
        "seq_p99_ms",
        "load_p50_ms",
        "load_p99_ms",
        "other_load_cores",
        "elapsed_s",
    ):
        merged[key] = med([r[key] for r in runs])
    merged["cpu_ms_per_wf"] = {
        k: med([r["cpu_ms_per_wf"][k] for r in runs]) for k in runs[0]["cpu_ms_per_wf"]
    }
    merged["peak_rss_mb"] = {
        "engine": med([r["peak_rss_mb"]["engine"] for r in runs]),
        "workers": [
            max(ws) for ws in zip(*(r["peak_rss_mb"]["workers"] for r in runs), strict=True)
        ],
    }
    merged["errors"] = sum(r["errors"] for r in runs)
    merged["rounds"] = runs
    return merged


def main_suite(args: argparse.Namespace, workdir: Path, log: Any, out: dict[str, Any]) -> None:
    plan = [(c, w) for c in CONFIGS if c in args.only for w in args.worker_counts]
    by_key: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in plan}
    for round_no in range(1, args.rounds + 1):
        # Every other round runs the plan backwards (an ABBA order): a steady drift of the
        # machine's speed during the run then falls on every configuration alike, rather
        # than on whichever always come last.
        for config, workers in plan if round_no % 2 else plan[::-1]:
            label = f"{config}, {workers} worker process{'es' if workers > 1 else ''}"
            rounds = f" (round {round_no}/{args.rounds})" if args.rounds > 1 else ""
            print(
                f"- {label}{rounds}: {args.workflows} workflows, {args.inflight} in flight; "
                f"{args.sequential} sequential ...",
                flush=True,
            )
            load_before = os.getloadavg()[0]
            try:
                if config in DBOS_JOURNALS:
                    r = run_dbos(config, workers, args, workdir, log)
                else:
                    r = run_sidecar(config, workers, args, workdir, log)
            except Exception as exc:
                traceback.print_exc()
                out.setdefault("failures", []).append(f"{label}: {exc!r}")
                continue
            r["loadavg_1m_before"] = round(load_before, 2)
            by_key[(config, workers)].append(r)
            print(
                f"  {r['throughput_wps']} wf/s, sequential p50 {r['seq_p50_ms']} ms "
                f"p99 {r['seq_p99_ms']} ms, all-process CPU {r['cpu_ms_per_wf']['total']} ms/wf, "
                f"other load {r['other_load_cores']} cores, errors {r['errors']}",
                flush=True,
            )
            if r["errors"]:
                out.setdefault("failures", []).append(
                    f"{label}: {r['errors']} workflows failed, e.g. {r['error_samples'][:1]}"
                )
    results = [median_result(runs) for runs in by_key.values() if runs]
    out["results"] = results
    if args.profile:
        print(
            f"- profiling the sidecar (durable, {args.profile_workers} worker(s)) with py-spy"
            " in a separate run ...",
            flush=True,
        )
        summary = profile_sidecar(args, workdir, log)
        if summary is not None:
            from bench.profile import print_summary

            out["sidecar_profile"] = summary
            print_summary(summary)
    targets = report.main_targets(results)
    out["targets"] = [t.as_dict() for t in targets]
    print()
    print(report.main_table(results))
    print()
    print(report.targets_table(targets))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (REPO / "var").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{stamp}-", dir=REPO / "var"))
    args.profile_out = results_dir / f"{stamp}-sidecar-profile.txt"
    log_path = workdir / "processes.log"
    began = time.perf_counter()
    out: dict[str, Any] = {
        "started_at": dt.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "sizes": {
            "workflows": args.workflows,
            "inflight": args.inflight,
            "sequential": args.sequential,
            "warmup": args.warmup,
            "activities_per_workflow": 5,
        },
        "machine": machine(workdir),
    }
    m = out["machine"]
    print(
        f"machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['memory_gb']} GiB, "
        f"{m['os']}, Python {m['python']}, SQLite {m['sqlite']}, dapr {m['dapr']}, "
        f"dbos {m['dbos']}; fsync p50 {m['fsync_ms_p50']} ms; load average "
        f"{m['loadavg_at_start']}"
    )
    print(f"databases and process logs in {workdir}", flush=True)
    with open(log_path, "a") as log:
        try:
            if args.main:
                main_suite(args, workdir, log, out)
            if args.scale:
                from bench import scale

                scale.suite(args, workdir, log, out)
            if args.web:
                from bench import web

                web.suite(args, workdir, log, out)
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
