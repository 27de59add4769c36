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
from pathlib import Path
from typing import Any

from bench import dapr_runs, report, workload
from bench.report import Target, fmt, ratio
from bench.util import BenchError, CpuMark, percentile, rss_mb


def sizes(args: argparse.Namespace) -> dict[str, int]:
    if args.quick:
        return {
            "fill": 10_000,
            "seed": 100,
            "compare_n": 300,
            "compare_seq": 40,
            "chain_short_runs": 20,
            "chain_long_runs": 1,
            "memory_n": 2_000,
            "rerun_n": 300,
        }
    return {
        "fill": 100_000,
        "seed": 200,
        "compare_n": 2_000,
        "compare_seq": 200,
        "chain_short_runs": 100,
        "chain_long_runs": 2,
        "memory_n": 20_000,
        "rerun_n": 2_000,
    }


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

    def best(name: str, key: str, high: bool) -> float:
        values = [r[key] for r in runs[name]]
        return max(values) if high else min(values)

    return {
        "instances": count,
        "db_mb": round(size_mb, 1),
        "fill_s": round(fill_s, 1),
        "runs": runs,
        "throughput_ratio": ratio(
            best("big", "throughput_wps", True), best("empty", "throughput_wps", True)
        ),
        "seq_p50_ratio": ratio(
            best("big", "seq_p50_ms", False), best("empty", "seq_p50_ms", False)
        ),
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


def suite(args: argparse.Namespace, workdir: Path, log: Any, out: dict[str, Any]) -> None:
    s = sizes(args)
    res: dict[str, Any] = {"sizes": s}
    out["scale"] = res
    steps = [
        ("big_database", f"new workflows on a {s['fill']:,}-instance database", big_database),
        ("chains", "sidecar CPU per step, 1000- vs 10-activity chains", chains),
        ("memory", f"sidecar RSS over {s['memory_n']:,} workflows, then purge", memory_and_purge),
    ]
    only = getattr(args, "scale_only", None)
    for key, title, fn in steps:
        if only and key not in only:
            continue
        print(f"- scale: {title} ...", flush=True)
        try:
            res[key] = fn(args, s, workdir, log)
        except Exception as exc:
            import traceback

            traceback.print_exc()
            out.setdefault("failures", []).append(f"scale {key}: {exc!r}")
    targets = scale_targets(res)
    out.setdefault("targets", []).extend(t.as_dict() for t in targets)
    print()
    print(report.targets_table(targets))


def scale_targets(res: dict[str, Any]) -> list[Target]:
    big = res.get("big_database") or {}
    ch = res.get("chains") or {}
    mem = res.get("memory") or {}
    purge = mem.get("purge") or {}
    n_fill = big.get("instances")
    targets = [
        Target(
            f"{n_fill or 100_000:,}-instance database: throughput >= 0.9x empty",
            big.get("throughput_ratio"),
            0.90,
            True,
            "best of rounds, big / empty",
        ),
        Target(
            "big database: sequential p50 <= 1.1x empty",
            big.get("seq_p50_ratio"),
            1.10,
            False,
            "best of rounds, big / empty",
        ),
        Target(
            "1000-activity chain: sidecar CPU per step <= 1.5x a 10-activity chain's",
            ch.get("sidecar_ratio"),
            1.5,
            False,
            f"{fmt(ch.get('1000', {}).get('sidecar_cpu_ms_per_step'), 3)} / "
            f"{fmt(ch.get('10', {}).get('sidecar_cpu_ms_per_step'), 3)} ms",
        ),
        Target(
            "memory flat: sidecar RSS in the last quarter <= 1.1x at the first quarter",
            mem.get("rss_growth_ratio"),
            1.10,
            False,
            f"{fmt(mem.get('sidecar_rss_last_quarter_max_mb'))} / "
            f"{fmt(mem.get('sidecar_rss_quarter_mb'))} MB over {fmt(mem.get('workflows'))} wf",
        ),
        Target(
            "purge reclaims space: live data after purging all <= 0.1x before",
            purge.get("live_ratio"),
            0.10,
            False,
            f"{fmt((purge.get('after') or {}).get('live_mb'))} / "
            f"{fmt((purge.get('before') or {}).get('live_mb'))} MB",
        ),
        Target(
            "purged space is reused: file after re-running work <= file before purge",
            ratio(
                (purge.get("after_rerun") or {}).get("file_mb"),
                (purge.get("before") or {}).get("file_mb"),
            ),
            1.0,
            False,
            f"{fmt((purge.get('after_rerun') or {}).get('file_mb'))} MB after "
            f"{fmt(purge.get('rerun_workflows'))} wf / {fmt((purge.get('before') or {}).get('file_mb'))} MB",
        ),
    ]
    return targets
