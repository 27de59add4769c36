"""The main comparison: the order workflow on every configuration, a row of figures each.

A configuration is a backend with its processes (``CONFIGURATIONS``); each runs with 1 and 2
worker processes by default. Per row: ``warmup`` workflows unmeasured, ``sequential`` ones one
at a time (latency), then ``workflows`` with ``inflight`` kept in flight (throughput, and the CPU
time of every process of the configuration over that phase).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import psutil

from bench import dapr_runs, daprd_runs, report
from bench.dapr_runs import LoadResult
from bench.daprd_runs import DaprdSystem
from bench.util import PYTHON, CpuMark, free_port, percentile, spawn, stop_process, wait_port

Row = dict[str, Any]
Runner = Callable[[str, int, argparse.Namespace, Path, IO[Any]], Row]


def busy_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


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


def ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 2) if values else None


def make_row(
    config: str,
    workers: int,
    args: argparse.Namespace,
    seq: list[float],
    load: LoadResult,
    m: Measure,
    rss: dict[str, Any],
) -> Row:
    """The figures of one configuration. CPU roles: ``sidecar`` (the engine's own process, if
    it has one), ``workers``, ``client`` (this process, if the client runs here)."""
    n = max(1, load.done)
    cpu = {role: round(sec * 1000 / n, 2) for role, sec in m.cpu.items()}
    return {
        "config": config,
        "label": CONFIGURATIONS[config].label,
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
            "engine": cpu.get("sidecar"),
            "workers": cpu["workers"],
            "client": cpu.get("client"),
            "total": round(sum(cpu.values()), 2),
        },
        "peak_rss_mb": {"engine": rss.get("sidecar"), "workers": rss["workers"]},
        "other_load_cores": round(m.other_cores, 2),
        "errors": len(load.errors),
        "error_samples": load.errors[:3],
    }


def run_dapr(
    config: str,
    workers: int,
    args: argparse.Namespace,
    workdir: Path,
    log: IO[Any],
    *,
    backend: str,
    sampling_rate: str | None = None,
) -> Row:
    """dapr.ext.workflow's workers and client against ``backend``: the sidecar on a ``file``,
    the sidecar ``memory`` (``--db :memory:``), the SDK ``floor``, or real ``daprd`` (with its
    private Redis, placement and scheduler). ``sampling_rate``: the sidecar traces
    (``--config``) at that rate, exporting to ``bench.span_sink``."""
    with contextlib.ExitStack() as stack:
        system: dapr_runs.SidecarSystem | DaprdSystem
        if backend == "daprd":
            system = DaprdSystem(workdir / f"{config}-{workers}", workers, log)
        else:
            sidecar_args: list[str] = []
            if sampling_rate is not None:
                config_file = stack.enter_context(span_sink(workdir, sampling_rate, log))
                sidecar_args = ["--config", str(config_file)]
            db = ":memory:" if backend == "memory" else str(workdir / f"{config}-{workers}.db")
            system = dapr_runs.SidecarSystem(
                db=db, workers=workers, log=log, floor=backend == "floor", sidecar_args=sidecar_args
            )
        stack.enter_context(system.start())
        port = system.port
        warm_lanes = max(1, min(args.warmup, args.inflight))
        warm = dapr_runs.run(
            lambda c: dapr_runs.closed_loop(c, "warm", args.warmup, warm_lanes), port
        )
        seq = dapr_runs.run(lambda c: dapr_runs.sequential(c, "seq", args.sequential), port)
        system.check_alive()
        with Measure({**system.pids(), "client": [os.getpid()]}) as m:
            load = dapr_runs.run(
                lambda c: dapr_runs.closed_loop(c, "tp", args.workflows, args.inflight), port
            )
        system.check_alive()
        rss = system.peak_rss()
    load.errors = warm.errors + load.errors
    row = make_row(config, workers, args, seq, load, m, rss)
    row["sidecar_start_s"] = round(system.started_in_s, 2)
    return row


@contextlib.contextmanager
def span_sink(workdir: Path, sampling_rate: str, log: IO[Any]) -> Iterator[Path]:
    """A Dapr Configuration tracing at ``sampling_rate`` to a span sink started for it."""
    port = free_port()
    sink = spawn([PYTHON, "-m", "bench.span_sink", "--port", str(port)], log)
    try:
        wait_port(port, sink)
        config = workdir / f"tracing-{sampling_rate}.yaml"
        config.write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: bench\n"
            f'spec:\n  tracing:\n    samplingRate: "{sampling_rate}"\n    zipkin:\n'
            f'      endpointAddress: "http://127.0.0.1:{port}/api/v2/spans"\n'
        )
        yield config
    finally:
        stop_process(sink)


def run_dbos(
    config: str,
    workers: int,
    args: argparse.Namespace,
    workdir: Path,
    log: IO[Any],
    *,
    journal: str,
) -> Row:
    """DBOS, ``workers`` processes on one SQLite file (engine, worker and client in each)."""
    from bench.dbos_runs import DbosSystem  # DBOS is imported only when a DBOS row runs

    db_file = workdir / f"{config}-{workers}.sqlite"
    with DbosSystem(db_file, workers, log, journal=journal).start() as system:
        system.warmup(max(1, args.warmup // workers))
        seq = system.sequential(args.sequential)
        with Measure(system.pids()) as m:
            load = system.throughput(args.workflows, args.inflight)
        system.check_alive()
        rss = system.peak_rss()
    row = make_row(config, workers, args, seq, load, m, rss)
    row["journal"] = journal
    return row


def dbos_unavailable() -> str | None:
    if importlib.util.find_spec("dbos") is None:
        return "DBOS is not installed: `make bench` installs requirements-bench.txt"
    return None


@dataclass(frozen=True)
class Configuration:
    """A row of the main table: its label, how to run it with n worker processes (the
    function returns ``make_row(...)``), and what it needs that this machine may lack (a
    function returning why it cannot run here, or None)."""

    label: str
    run: Runner
    unavailable: Callable[[], str | None] = lambda: None


# The rows, in the table's order. DBOS's SQLite journal: "default" leaves DBOS's own choice (a
# rollback journal); "wal" switches the file to WAL first, as the sidecar's store is.
CONFIGURATIONS: dict[str, Configuration] = {
    "sidecar-durable": Configuration(
        "sidecar, SQLite file (durable)", partial(run_dapr, backend="file")
    ),
    "sidecar-memory": Configuration(
        "sidecar, --db :memory: (reference)", partial(run_dapr, backend="memory")
    ),
    # Tracing's cost (docs/performance.md): the durable sidecar with a Configuration at
    # samplingRate 0 (tracing off, as no configuration) and at 1 (every workflow's spans made
    # and exported to bench.span_sink, a collector that drops them).
    "sidecar-traced-0": Configuration(
        "sidecar, durable, tracing samplingRate 0",
        partial(run_dapr, backend="file", sampling_rate="0"),
    ),
    "sidecar-traced-1": Configuration(
        "sidecar, durable, tracing samplingRate 1",
        partial(run_dapr, backend="file", sampling_rate="1"),
    ),
    report.REFERENCE: Configuration(
        "SDK floor: a backend doing nothing", partial(run_dapr, backend="floor")
    ),
    "daprd": Configuration(
        "daprd with Redis, placement, scheduler",
        partial(run_dapr, backend="daprd"),
        daprd_runs.why_unavailable,
    ),
    "dbos": Configuration(
        "DBOS 3.x, SQLite as DBOS sets it up",
        partial(run_dbos, journal="default"),
        dbos_unavailable,
    ),
    "dbos-wal": Configuration(
        "DBOS 3.x, SQLite switched to WAL", partial(run_dbos, journal="wal"), dbos_unavailable
    ),
}


MEDIAN_FIGURES = (
    "throughput_wps",
    "elapsed_s",
    "seq_p50_ms",
    "seq_p99_ms",
    "load_p50_ms",
    "load_p99_ms",
    "other_load_cores",
)


def median_row(runs: list[Row]) -> Row:
    """One row from several rounds of a configuration: the median of every figure."""
    if len(runs) == 1:
        return runs[0]

    def med(values: list[Any]) -> Any:
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 2) if values else None

    merged = dict(runs[0])
    for key in MEDIAN_FIGURES:
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


def skipped_configurations(only: list[str]) -> dict[str, str]:
    """The chosen configurations this machine cannot run, each with why (a note, not a
    failure: the rest of the comparison still runs)."""
    reasons = {config: CONFIGURATIONS[config].unavailable() for config in only}
    return {config: reason for config, reason in reasons.items() if reason}


def suite(args: argparse.Namespace, workdir: Path, log: IO[Any], out: dict[str, Any]) -> None:
    skipped = skipped_configurations(args.only)
    for config, reason in skipped.items():
        print(f"- {config}: SKIPPED, {reason}", flush=True)
    if skipped:
        out["skipped"] = skipped
    plan = [
        (c, w)
        for c in CONFIGURATIONS
        if c in args.only and c not in skipped
        for w in args.worker_counts
    ]
    by_key: dict[tuple[str, int], list[Row]] = {key: [] for key in plan}
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
                r = CONFIGURATIONS[config].run(config, workers, args, workdir, log)
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
    rows = [median_row(runs) for runs in by_key.values() if runs]
    for row in rows:
        row["vs_floor"] = report.ratios_to_reference(row, rows)
    out["results"] = rows
    print()
    print(report.main_table(rows))
    for config, reason in skipped.items():
        print(f"({CONFIGURATIONS[config].label}: not run, {reason})")
