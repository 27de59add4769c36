"""Optional sampling profile of the sidecar process with py-spy (``--profile``)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench.util import PYTHON


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(PYTHON).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


class Profiler:
    """``py-spy record --format raw`` of one pid between start() and stop()."""

    def __init__(self, pid: int, out: Path, log: Any, rate: int = 100, native: bool = True) -> None:
        self.pid, self.out, self.log, self.rate, self.native = pid, out, log, rate, native
        self.proc: subprocess.Popen | None = None

    def start(self) -> bool:
        exe = py_spy()
        if exe is None:
            print("  (py-spy not found: pip install py-spy; no profile taken)")
            return False
        cmd = [
            exe,
            "record",
            "-p",
            str(self.pid),
            "-r",
            str(self.rate),
            "-f",
            "raw",
            "-o",
            str(self.out),
        ]
        # --gil keeps the samples where a thread holds the GIL: Python's CPU time, not threads
        # blocked in fsync or epoll. Native frames show where the C parts (grpc, uvloop,
        # sqlite3) spend it; they need the process paused while sampling, so the throughput of
        # a profiled run is not reported in the table.
        cmd += ["--gil", "--native"] if self.native else ["--gil", "--nonblocking"]
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=self.log,
        )
        return True

    def stop(self) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if not self.out.exists():
            return None
        return summarize(self.out)


FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    if match["func"].startswith("0x"):  # an unsymbolized native frame: name its library
        return f"[{Path(path).name.split('.')[0]}]"
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = (
            Path(path).name
            if "/sidecar/" not in path
            else "sidecar/" + path.split("/sidecar/", 1)[1]
        )
    return f"{match['func']} ({path})"


def library(frame: str) -> str:
    if frame.startswith("["):
        return frame
    return frame.rsplit("(", 1)[-1].rstrip(")").split(".")[0]


def summarize(raw: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive sample shares per function (line numbers folded)."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    py_counts: Counter[str] = Counter()  # attributed to the innermost Python frame
    pair_counts: Counter[str] = Counter()  # native leaf <- innermost Python frame
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [
            short(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += n
        self_counts[frames[-1]] += n
        python = [f for f in frames if ".py)" in f or "<frozen" in f]
        inner = python[-1] if python else frames[-1]
        py_counts[inner] += n
        leaf = frames[-1]
        if leaf == inner:
            pair_counts[inner] += n
        else:
            # the leaf, the first frame above it from another library, the Python caller
            above = next(
                (f for f in reversed(frames[:-1]) if library(f) != library(leaf) and f != inner),
                None,
            )
            chain = [leaf] + ([above] if above and above not in python else []) + [inner]
            pair_counts[" <- ".join(chain)] += n
        for f in set(frames):
            incl_counts[f] += n

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * c / total, 1)] for name, c in counter.most_common(top)]

    return {
        "samples": total,
        "self_pct": share(self_counts),
        "python_self_pct": share(py_counts),
        "leaf_and_caller_pct": share(pair_counts),
        "inclusive_pct": share(incl_counts),
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\n  py-spy: {summary['samples']} samples of the sidecar holding the GIL")
    sections = [
        ("top leaf frames (native included)", "self_pct"),
        ("top leaf <- innermost Python frame", "leaf_and_caller_pct"),
        ("by innermost Python frame (its C calls included)", "python_self_pct"),
    ]
    for title, key in sections:
        print(f"  {title}:")
        for name, pct in summary[key][:15]:
            print(f"    {pct:5.1f}%  {name}")
