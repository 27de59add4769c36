"""Processes, ports, CPU/RSS accounting, percentiles and the machine description."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class BenchError(Exception):
    """Something went wrong (a process died, a workflow failed): the run exits non-zero."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(
                f"process {proc.args!r} exited with {proc.returncode} before listening"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def wait_line(proc: subprocess.Popen, expected: str, timeout: float = 60.0) -> None:
    """Wait for ``expected`` on the process's stdout (a pipe), failing if it exits first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise BenchError(f"{proc.args!r} exited ({proc.wait()}) before printing {expected!r}")
        if line.strip() == expected:
            return
    raise BenchError(f"{proc.args!r} did not print {expected!r} within {timeout:.0f}s")


def spawn(
    args: list[str],
    log: IO[Any],
    *,
    stdin: bool = False,
    stdout_pipe: bool = False,
    env: dict[str, str] | None = None,
    drop_env: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if k not in drop_env}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
    )
    if env:
        full_env.update(env)
    return subprocess.Popen(
        args,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout_pipe else log,
        stderr=log,
        text=True,
        env=full_env,
        cwd=str(cwd or REPO),
    )


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; only the process we started, by its pid."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(Exception):
        if proc.stdin:
            proc.stdin.close()
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's resident-set high-water mark (Linux), else the current RSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss_mb(pid)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class CpuMark:
    """CPU seconds of a set of processes (by role) at one moment."""

    values: dict[str, float]

    @classmethod
    def take(cls, pids: dict[str, list[int]]) -> CpuMark:
        values = {role: sum(cpu_seconds(pid) for pid in plist) for role, plist in pids.items()}
        return cls(values)

    def since(self, earlier: CpuMark) -> dict[str, float]:
        return {role: self.values[role] - earlier.values.get(role, 0.0) for role in self.values}


def fsync_ms(directory: Path, rounds: int = 30) -> float:
    """Median time of a 4 KiB write + fsync in ``directory``: what one durable commit costs."""
    times = []
    with tempfile.NamedTemporaryFile(dir=directory) as fh:
        for _ in range(rounds):
            os.write(fh.fileno(), b"x" * 4096)
            began = time.perf_counter()
            os.fsync(fh.fileno())
            times.append(time.perf_counter() - began)
    return percentile(times, 50) * 1000


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine(workdir: Path) -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {
        "cpu": cpu_model(),
        "logical_cpus": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "dapr": version_of("dapr"),
        "dbos": version_of("dbos"),
        "grpcio": version_of("grpcio"),
        "uvloop": version_of("uvloop"),
        "fsync_ms_p50": round(fsync_ms(workdir), 2),
        "loadavg_at_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }
