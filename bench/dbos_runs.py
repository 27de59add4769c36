"""DBOS 3.x on its SQLite system database: 1..n processes of bench.dbos_worker on one file."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.dapr_runs import LoadResult
from bench.util import PYTHON, BenchError, peak_rss_mb, spawn, stop_process, wait_line


def prepare_database(path: Path, journal: str) -> str:
    """Create the SQLite file; ``journal="wal"`` puts it in WAL mode (persistent in the file),
    as the sidecar's store is; ``"default"`` leaves DBOS's own choice (rollback journal).
    Either way synchronous stays SQLite's default, FULL: every commit is on disk."""
    conn = sqlite3.connect(path)
    try:
        if journal == "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise BenchError(f"could not put {path} in WAL mode (got {mode})")
    finally:
        conn.close()
    return f"sqlite:///{path}"


@dataclass
class DbosSystem:
    db_file: Path
    processes: int
    log: IO[Any]
    journal: str = "wal"
    procs: list[Any] = field(default_factory=list)

    def start(self) -> DbosSystem:
        """Start the processes (all stopped again if one fails to start)."""
        url = prepare_database(self.db_file, self.journal)
        try:
            # One after the other: the first one creates DBOS's schema.
            for i in range(self.processes):
                command = [PYTHON, "-m", "bench.dbos_worker", "--db", url]
                command += ["--executor-id", f"bench-{i}"]
                proc = spawn(command, self.log, stdin=True, stdout_pipe=True)
                self.procs.append(proc)
                wait_line(proc, "ready", timeout=120)
        except BaseException:
            self.stop()
            raise
        return self

    def send(self, proc: Any, command: dict[str, Any]) -> None:
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()

    def receive(self, proc: Any) -> dict[str, Any]:
        line = proc.stdout.readline()
        if not line:
            raise BenchError(f"DBOS process {proc.pid} exited ({proc.wait()}) mid-command")
        answer = json.loads(line)
        if "error" in answer and isinstance(answer["error"], str):
            raise BenchError(f"DBOS process {proc.pid}: {answer['error']}")
        return answer

    def sequential(self, n: int) -> list[float]:
        proc = self.procs[0]
        self.send(proc, {"cmd": "sequential", "n": n})
        return self.receive(proc)["latencies"]

    def warmup(self, n: int) -> None:
        for proc in self.procs:
            self.send(proc, {"cmd": "sequential", "n": n})
        for proc in self.procs:
            self.receive(proc)

    def throughput(self, n: int, inflight: int) -> LoadResult:
        """n workflows split over the processes, each keeping its share of ``inflight`` in
        flight, all starting at the same instant: total / (last completion - first start)."""
        start_at = time.time() + 0.5
        shares = [
            n // self.processes + (1 if i < n % self.processes else 0)
            for i in range(self.processes)
        ]
        lanes = [max(1, inflight // self.processes)] * self.processes
        for proc, share, lane in zip(self.procs, shares, lanes, strict=True):
            self.send(
                proc, {"cmd": "throughput", "n": share, "inflight": lane, "start_at": start_at}
            )
        answers = [self.receive(proc) for proc in self.procs]
        return LoadResult(
            done=sum(a["done"] for a in answers),
            elapsed_s=max(a["last"] for a in answers) - min(a["first"] for a in answers),
            latencies=[x for a in answers for x in a["latencies"]],
            errors=[e for a in answers for e in a["errors"]],
        )

    def pids(self) -> dict[str, list[int]]:
        return {"workers": [p.pid for p in self.procs]}

    def peak_rss(self) -> dict[str, Any]:
        return {"workers": [round(peak_rss_mb(p.pid), 1) for p in self.procs]}

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise BenchError(f"DBOS process {proc.pid} exited with {proc.returncode}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    self.send(proc, {"cmd": "exit"})
                except (BrokenPipeError, ValueError, OSError):
                    pass
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except Exception:
                stop_process(proc)

    def __enter__(self) -> DbosSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
