"""Sequential latency, paired: ``python -m bench.experiments.paired [-n N] CONFIG ...``.

Every configuration is started at once and the workflows take turns: workflow 1 on each
configuration, then workflow 2 on each, and so on. The machine's drift (up to 25% between
two runs a few minutes apart on a virtual machine) then falls on all of them alike, so
differences of a few percent can be read, where back-to-back runs cannot show them. Use it to
compare two builds or settings. Its figures are not those of ``python -m bench``, whose
sequential runs are back to back (each configuration warm, nothing else running between its
workflows): DBOS, a library keeping its caches warm between workflows, loses most here.

CONFIG is one of ``durable``, ``memory`` (the sidecar on a file or ``--db :memory:``),
``floor`` (the SDK floor), ``dbos``, ``dbos-wal``, optionally followed by sidecar options
after a colon, e.g. ``durable:--commit-delay-ms=0``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import dapr_runs, workload
from bench.dapr_runs import SidecarSystem
from bench.dbos_runs import DbosSystem
from bench.util import percentile

KINDS = ("durable", "memory", "floor", "dbos", "dbos-wal")


def start(config: str, workdir: Path, log: Any) -> Any:
    kind, _, options = config.partition(":")
    if kind not in KINDS:
        raise SystemExit(f"unknown configuration {kind!r}; one of {', '.join(KINDS)}")
    if kind.startswith("dbos"):
        journal = "wal" if kind == "dbos-wal" else "default"
        return DbosSystem(workdir / "dbos.db", 1, log, journal=journal).start()
    db = ":memory:" if kind == "memory" else str(workdir / "sidecar.db")
    extra = [o for o in options.split(",") if o]
    return SidecarSystem(db, 1, log, floor=kind == "floor", sidecar_args=extra).start()


async def run(systems: list[Any], n: int, warmup: int) -> list[list[float]]:
    clients = [
        dapr_runs.client_for(s.port) if isinstance(s, SidecarSystem) else None for s in systems
    ]
    for system, client in zip(systems, clients, strict=True):
        if client is None:
            system.warmup(warmup)
        else:
            await dapr_runs.sequential(client, "warm", warmup)
    latencies: list[list[float]] = [[] for _ in systems]
    entries = list(zip(systems, clients, latencies, strict=True))
    for i in range(n):
        # Rotate who goes first and reverse every other round, so that no configuration
        # always runs right after the same one.
        turn = entries[i % len(entries) :] + entries[: i % len(entries)]
        for system, client, out in turn[::-1] if i % 2 else turn:
            if client is None:
                out.extend(system.sequential(1))
            else:
                inp = workload.order_input(i)
                out.append(await dapr_runs.run_one(client, f"p-{i}", workload.ORDER_WORKFLOW, inp))
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.experiments.paired",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("configs", nargs="+", help="configurations (see above)")
    parser.add_argument("-n", type=int, default=300, help="workflows per configuration (300)")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured first (30)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-paired-") as tmp:
        systems: list[Any] = []
        try:
            for i, config in enumerate(args.configs):
                workdir = Path(tmp) / str(i)
                workdir.mkdir()
                systems.append(start(config, workdir, open(workdir / "log", "w")))  # noqa: SIM115
            latencies = asyncio.run(run(systems, args.n, args.warmup))
        finally:
            for system in systems:
                system.stop()
    print(f"sequential order workflows, {args.n} per configuration, taking turns (ms)")
    width = max(len(c) for c in args.configs)
    for config, seconds in zip(args.configs, latencies, strict=True):
        ms = sorted(1000 * s for s in seconds)
        print(
            f"  {config:<{width}}  p50 {statistics.median(ms):6.2f}  p25 {percentile(ms, 25):6.2f}"
            f"  p75 {percentile(ms, 75):6.2f}  p99 {percentile(ms, 99):6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
