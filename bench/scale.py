"""``python -m bench --scale``: the sidecar (durable) at scale.

* big database: new workflows on a database holding 100,000 finished instances against an
  empty one (throughput, sequential p50, start-up time);
* long chains: the sidecar's CPU per activity step in a 1,000-activity chain against a
  10-activity chain;
* memory: the sidecar's RSS sampled through a 20,000-workflow run;
* purge: the database's live size before and after purging every instance, and its file size
  after the same work runs again (is the space reused?).
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import time
import traceback
from pathlib import Path
from typing import Any

from bench import dapr_runs, workload
from bench.report import fmt, ratio, table
from bench.util import BenchError, CpuMark, percentile, rss_mb

# name: (default, with --quick)
SIZES = {
    "fill": (100_000, 10_000),  # instances in the big database
    "seed": (200, 100),  # real workflows copied to fill it
    "compare_n": (2_000, 300),  # workflows measured on the big and the empty database
    "compare_seq": (200, 40),
    "chain_short_runs": (100, 20),  # 10-activity chains
    "chain_long_runs": (2, 1),  # 1,000-activity chains
    "memory_n": (20_000, 2_000),  # workflows of the memory run, then purged
    "rerun_n": (2_000, 300),  # workflows run again after the purge
}


def sizes(args: argparse.Namespace) -> dict[str, int]:
    return {name: quick if args.quick else default for name, (default, quick) in SIZES.items()}


# --- the 100,000-instance database --------------------------------------------------------------


def fill_database(path: Path, target: int) -> int:
    """Copy the finished instances already in ``path`` (every row of every table keyed by
    instance_id) under new instance ids until ``target`` instances exist; return the count.

    Running 100,000 workflows through the SDK would take longer than the whole benchmark; the
    copies are byte-for-byte what those workflows left behind, under other ids."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        base = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
        if base == 0:
            raise BenchError("fill_database: no instance to copy")
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
            if any(col[1] == "instance_id" for col in conn.execute(f"PRAGMA table_info({name})"))
        ]
        copies = math.ceil((target - base) / base)
        conn.execute("CREATE TEMP TABLE base_ids AS SELECT instance_id FROM instances")
        batch = 50
        for first in range(1, copies + 1, batch):
            last = min(copies, first + batch - 1)
            conn.execute("BEGIN")
            for table in tables:
                info = conn.execute(f"PRAGMA table_info({table})").fetchall()
                pk = [c for c in info if c[5]]
                # an INTEGER PRIMARY KEY alone is the rowid: let SQLite assign new ones
                rowid = {pk[0][1]} if len(pk) == 1 and pk[0][2].upper() == "INTEGER" else set()
                cols = [c[1] for c in info if c[1] not in rowid]
                select = ", ".join(
                    "t.instance_id || '-copy' || k.n" if c == "instance_id" else f"t.{c}"
                    for c in cols
                )
                conn.execute(
                    f"WITH RECURSIVE k(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM k WHERE n < ?) "
                    f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {table} t "
                    f"JOIN base_ids b ON b.instance_id = t.instance_id, k",
                    (first, last),
                )
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return conn.execute("SELECT count(*) FROM instances").fetchone()[0]
    finally:
        conn.close()


def measure_new_work(
    db: str, n: int, seq_n: int, inflight: int, warmup: int, log: Any
) -> dict[str, Any]:
    with dapr_runs.SidecarSystem(db=db, workers=1, log=log).start() as system:
        port = system.port
        dapr_runs.run(lambda c: dapr_runs.closed_loop(c, "new-warm", warmup, warmup), port)
        seq = dapr_runs.run(lambda c: dapr_runs.sequential(c, "new-seq", seq_n), port)
        mark = CpuMark.take(system.pids())
        load = dapr_runs.run(lambda c: dapr_runs.closed_loop(c, "new-tp", n, inflight), port)
        cpu = CpuMark.take(system.pids()).since(mark)
        system.check_alive()
        rss = system.peak_rss()
        if load.errors:
            raise BenchError(f"{len(load.errors)} workflows failed: {load.errors[:1]}")
    return {
        "throughput_wps": round(load.throughput, 1),
        "seq_p50_ms": round(percentile(seq, 50) * 1000, 2),
        "seq_p99_ms": round(percentile(seq, 99) * 1000, 2),
        "sidecar_cpu_ms_per_wf": round(cpu["sidecar"] * 1000 / max(1, load.done), 2),
        "sidecar_start_s": round(system.started_in_s, 2),
        "sidecar_peak_rss_mb": rss["sidecar"],
    }


def big_database(
    args: argparse.Namespace, s: dict[str, int], workdir: Path, log: Any
) -> dict[str, Any]:
    big = workdir / "big.db"
    print(f"  seeding {s['seed']} real workflows, then copying them to {s['fill']:,} instances")
    with dapr_runs.SidecarSystem(db=str(big), workers=1, log=log).start() as system:
        seeded = dapr_runs.run(
            lambda c: dapr_runs.closed_loop(c, "seed", s["seed"], min(100, s["seed"])),
            system.port,
        )
        if seeded.errors:
            raise BenchError(f"seeding failed: {seeded.errors[:1]}")
    began = time.perf_counter()
    count = fill_database(big, s["fill"])
    fill_s = time.perf_counter() - began
    size_mb = big.stat().st_size / 2**20
    print(f"  {count:,} instances, {size_mb:.0f} MB, filled in {fill_s:.0f} s")
    runs: dict[str, list[dict[str, Any]]] = {"empty": [], "big": []}
    for _ in range(args.scale_rounds):
        for name in ("empty", "big"):
            db = str(big) if name == "big" else str(workdir / f"empty-{len(runs['empty'])}.db")
            r = measure_new_work(
                db, s["compare_n"], s["compare_seq"], args.inflight, args.warmup, log
            )
            print(
                f"  {name} database: {r['throughput_wps']} wf/s, sequential p50 "
                f"{r['seq_p50_ms']} ms, sidecar {r['sidecar_cpu_ms_per_wf']} CPU ms/wf, "
                f"start {r['sidecar_start_s']} s, peak RSS {r['sidecar_peak_rss_mb']} MB",
                flush=True,
            )
            runs[name].append(r)

    # The best of the rounds of each: what the database's size costs, through the machine's noise.
    tput = {name: max(r["throughput_wps"] for r in runs[name]) for name in runs}
    p50 = {name: min(r["seq_p50_ms"] for r in runs[name]) for name in runs}
    return {
        "instances": count,
        "db_mb": round(size_mb, 1),
        "fill_s": round(fill_s, 1),
        "runs": runs,
        "best_throughput_wps": tput,
        "best_seq_p50_ms": p50,
        "throughput_ratio": ratio(tput["big"], tput["empty"]),
        "seq_p50_ratio": ratio(p50["big"], p50["empty"]),
    }


# --- long chains --------------------------------------------------------------------------------


def chains(args: argparse.Namespace, s: dict[str, int], workdir: Path, log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with dapr_runs.SidecarSystem(db=str(workdir / "chains.db"), workers=1, log=log).start() as sys_:
        port = sys_.port
        dapr_runs.run(
            lambda c: dapr_runs.sequential(
                c, "chain-warm", 5, workload.CHAIN_WORKFLOW, lambda i: 10
            ),
            port,
        )
        for steps, runs in ((10, s["chain_short_runs"]), (1000, s["chain_long_runs"])):
            mark = CpuMark.take(sys_.pids())
            began = time.perf_counter()
            lat = dapr_runs.run(
                lambda c, steps=steps, runs=runs: dapr_runs.sequential(
                    c, f"chain{steps}", runs, workload.CHAIN_WORKFLOW, lambda i: steps
                ),
                port,
            )
            wall = time.perf_counter() - began
            cpu = CpuMark.take(sys_.pids()).since(mark)
            total_steps = steps * runs
            out[str(steps)] = {
                "workflows": runs,
                "steps": total_steps,
                "sidecar_cpu_ms_per_step": round(cpu["sidecar"] * 1000 / total_steps, 3),
                "worker_cpu_ms_per_step": round(cpu["workers"] * 1000 / total_steps, 3),
                "wall_ms_per_step": round(wall * 1000 / total_steps, 3),
                "workflow_s_p50": round(percentile(lat, 50), 3),
            }
            r = out[str(steps)]
            print(
                f"  {steps}-activity chain x{runs}: sidecar {r['sidecar_cpu_ms_per_step']} CPU "
                f"ms/step, worker {r['worker_cpu_ms_per_step']} CPU ms/step, wall "
                f"{r['wall_ms_per_step']} ms/step",
                flush=True,
            )
        sys_.check_alive()
    out["sidecar_ratio"] = ratio(
        out["1000"]["sidecar_cpu_ms_per_step"], out["10"]["sidecar_cpu_ms_per_step"]
    )
    out["worker_ratio"] = ratio(
        out["1000"]["worker_cpu_ms_per_step"], out["10"]["worker_cpu_ms_per_step"]
    )
    return out


# --- memory over a long run, then purge ----------------------------------------------------------


def db_usage(path: Path) -> dict[str, float]:
    """File sizes (main + WAL) and live bytes (pages in use), read beside the running sidecar."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        instances = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    return {
        "file_mb": round(path.stat().st_size / 2**20, 2),
        "wal_mb": round(wal.stat().st_size / 2**20, 2) if wal.exists() else 0.0,
        "live_mb": round((pages - free) * page_size / 2**20, 2),
        "free_mb": round(free * page_size / 2**20, 2),
        "instances": instances,
    }


def memory_and_purge(
    args: argparse.Namespace, s: dict[str, int], workdir: Path, log: Any
) -> dict[str, Any]:
    db = workdir / "memory.db"
    n = s["memory_n"]
    every = max(1, n // 20)
    samples: list[list[float]] = []
    with dapr_runs.SidecarSystem(db=str(db), workers=1, log=log).start() as system:
        pid = system.sidecar.pid
        worker_pid = system.worker_procs[0].pid
        samples.append([0, round(rss_mb(pid), 1), round(rss_mb(worker_pid), 1)])

        def on_done(done: int) -> None:
            if done % every == 0:
                samples.append([done, round(rss_mb(pid), 1), round(rss_mb(worker_pid), 1)])

        began = time.perf_counter()
        load = dapr_runs.run(
            lambda c: dapr_runs.closed_loop(c, "mem", n, args.inflight, on_done=on_done),
            system.port,
        )
        run_s = time.perf_counter() - began
        if load.errors:
            raise BenchError(f"{len(load.errors)} workflows failed: {load.errors[:1]}")
        print(
            f"  {n:,} workflows in {run_s:.0f} s ({load.throughput:.1f} wf/s); sidecar RSS "
            + ", ".join(f"{int(d)}:{r:.0f}MB" for d, r, _ in samples[:: max(1, len(samples) // 6)])
            + f", end {samples[-1][1]:.0f} MB",
            flush=True,
        )
        before = db_usage(db)
        ids = [f"mem-{i}" for i in range(n)]
        began = time.perf_counter()
        purged = dapr_runs.run(lambda c: dapr_runs.purge_all(c, ids), system.port)
        purge_s = time.perf_counter() - began
        time.sleep(1.0)
        after = db_usage(db)
        print(
            f"  purged {purged:,} instances in {purge_s:.1f} s: live {before['live_mb']} -> "
            f"{after['live_mb']} MB, file {before['file_mb']} -> {after['file_mb']} MB "
            f"(+WAL {after['wal_mb']} MB)",
            flush=True,
        )
        rerun_n = s["rerun_n"]
        rerun = dapr_runs.run(
            lambda c: dapr_runs.closed_loop(c, "rerun", rerun_n, args.inflight), system.port
        )
        if rerun.errors:
            raise BenchError(f"{len(rerun.errors)} workflows failed: {rerun.errors[:1]}")
        again = db_usage(db)
        print(
            f"  {rerun_n:,} more workflows: file {again['file_mb']} MB, live {again['live_mb']} MB",
            flush=True,
        )
        system.check_alive()
    quarter = next(x for x in samples if x[0] >= n // 4)
    tail = [x[1] for x in samples if x[0] >= 3 * n // 4]
    return {
        "workflows": n,
        "throughput_wps": round(load.throughput, 1),
        "rss_samples": samples,  # [completed, sidecar MB, worker MB]
        "sidecar_rss_quarter_mb": quarter[1],
        "sidecar_rss_last_quarter_max_mb": max(tail),
        "rss_growth_ratio": ratio(max(tail), quarter[1]),
        "worker_rss_growth_ratio": ratio(
            max(x[2] for x in samples if x[0] >= 3 * n // 4), quarter[2]
        ),
        "purge": {
            "purged": purged,
            "seconds": round(purge_s, 2),
            "before": before,
            "after": after,
            "after_rerun": again,
            "rerun_workflows": rerun_n,
            "live_ratio": ratio(after["live_mb"], before["live_mb"]),
        },
    }


# --- the suite ----------------------------------------------------------------------------------

CHECKS = {"big_database": big_database, "chains": chains, "memory": memory_and_purge}


def suite(args: argparse.Namespace, workdir: Path, log: Any, out: dict[str, Any]) -> None:
    s = sizes(args)
    res: dict[str, Any] = {"sizes": s}
    out["scale"] = res
    titles = {
        "big_database": f"new workflows on a {s['fill']:,}-instance database",
        "chains": "sidecar CPU per step, 1000- vs 10-activity chains",
        "memory": f"sidecar RSS over {s['memory_n']:,} workflows, then purge",
    }
    for key, check in CHECKS.items():
        if args.scale_only and key not in args.scale_only:
            continue
        print(f"- scale: {titles[key]} ...", flush=True)
        try:
            res[key] = check(args, s, workdir, log)
        except Exception as exc:
            traceback.print_exc()
            out.setdefault("failures", []).append(f"scale {key}: {exc!r}")
    print()
    print(summary_table(res))


def summary_table(res: dict[str, Any]) -> str:
    """A line per comparison of the checks that ran: the figure, the one it is read against,
    and their ratio."""
    rows: list[tuple[str, Any, Any, float | None]] = []
    if big := res.get("big_database"):
        tput, p50 = big["best_throughput_wps"], big["best_seq_p50_ms"]
        rows += [
            (
                f"{big['instances']:,}-instance / empty database: throughput wf/s (best)",
                tput["big"],
                tput["empty"],
                big["throughput_ratio"],
            ),
            (
                "big / empty database: sequential p50 ms (best)",
                p50["big"],
                p50["empty"],
                big["seq_p50_ratio"],
            ),
        ]
    if chain := res.get("chains"):
        rows.append(
            (
                "1000- / 10-activity chain: sidecar CPU ms per step",
                chain["1000"]["sidecar_cpu_ms_per_step"],
                chain["10"]["sidecar_cpu_ms_per_step"],
                chain["sidecar_ratio"],
            )
        )
    if mem := res.get("memory"):
        purge = mem["purge"]
        before, after, rerun = purge["before"], purge["after"], purge["after_rerun"]
        rows += [
            (
                f"sidecar RSS MB over {mem['workflows']:,} wf: last quarter (max) / first",
                mem["sidecar_rss_last_quarter_max_mb"],
                mem["sidecar_rss_quarter_mb"],
                mem["rss_growth_ratio"],
            ),
            (
                "live data MB after purging all / before",
                after["live_mb"],
                before["live_mb"],
                purge["live_ratio"],
            ),
            (
                f"file MB after {purge['rerun_workflows']:,} more wf / before the purge",
                rerun["file_mb"],
                before["file_mb"],
                ratio(rerun["file_mb"], before["file_mb"]),
            ),
        ]
    cells = [[name, fmt(a, 2), fmt(b, 2), fmt(r, 2)] for name, a, b, r in rows]
    return table(["scale check", "figure", "against", "ratio"], cells)
