"""The Dapr Python SDK's own workflow example programs (dapr/python-sdk, examples/workflow), run
unchanged as subprocesses against daprd and against the embedded sidecar, their stdout compared.

Their code is not copied into this repository: ``DAPR_PYTHON_SDK_SRC`` names a checkout of
dapr/python-sdk (a work tree, or a git directory, read at ``SDK_COMMIT``). Each program finds
its engine through ``DAPR_GRPC_PORT``/``DAPR_HTTP_PORT``, as under `dapr run`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .comparison import normalise

# The SDK commit the examples were read at when this suite was written (after 1.19.0: the
# examples of the SDK this project installs, `dapr` 1.19).
SDK_COMMIT = "e4ad1818079c5089814e4d1610b585286d28b98f"
SOURCE_VARIABLE = "DAPR_PYTHON_SDK_SRC"
RUN_TIMEOUT = 150.0
LINE_ATOMIC_PRINT = Path(__file__).parent / "line_atomic_print"


@dataclass
class Example:
    """One example program: its file, the invocations (argv lists) run one after the other
    against the same engine, text typed on its stdin after a delay, lines to leave out."""

    file: str
    invocations: list[list[str]] = field(default_factory=lambda: [[]])
    stdin: tuple[float, str] | None = None  # (seconds, text)
    drop: str | None = None  # lines matching this are random by design (random.choice)
    env: dict[str, str] = field(default_factory=dict)


EXAMPLES = [
    Example("simple.py"),
    Example("simple_aio_client.py"),
    Example("task_chaining.py"),
    Example("fan_out_fan_in.py"),
    Example("child_workflow.py"),
    # Its approval goes through DaprClient.raise_workflow_event, which the SDK 1.19 no longer
    # has: on both engines the prompt thread fails and the wait times out (--timeout 3).
    Example("human_approval.py", invocations=[["--timeout", "3"]], stdin=(3.0, "\n")),
    Example("monitor.py", stdin=(14.0, "\n"), drop=r"^(Job 'job1' is|\*\*\* Alert)"),
    Example("versioning.py", invocations=[["part1"], ["part2"]]),
    Example("async_activities.py", env={"WORKFLOW_IO_SECONDS": "0.2"}),
    Example("pydantic_models.py"),
    Example("history_propagation.py"),
]
# Not run: multi-app1/2/3.py start workflows in other app ids (cross-app workflows, which daprd
# 1.18.2 does not have and the sidecar, one app, does not serve).


def source_location() -> str | None:
    return os.environ.get(SOURCE_VARIABLE) or None


def read_example(source: str, file: str) -> str:
    root = Path(source)
    checkout = root / "examples" / "workflow" / file
    if checkout.exists():
        return checkout.read_text()
    git_dir = root if (root / "HEAD").exists() else root / ".git"
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{SDK_COMMIT}:examples/workflow/{file}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def run_example(example: Example, program: Path, grpc_port: int, http_port: int, log: Path) -> str:
    """Every invocation of the example against one engine; their stdout, one after the other
    (stderr, where the SDK logs, goes to ``log``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    env.update(
        PYTHONPATH=str(LINE_ATOMIC_PRINT),
        DAPR_GRPC_PORT=str(grpc_port),
        DAPR_HTTP_PORT=str(http_port),
        PYTHONUNBUFFERED="1",
        **example.env,
    )
    out: list[str] = []
    for argv in example.invocations:
        with log.open("ab") as errors:
            proc = subprocess.Popen(
                [sys.executable, str(program), *argv],
                cwd=program.parent,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        chunks: list[str] = []
        reader = threading.Thread(target=_read_all, args=(proc, chunks))
        reader.start()
        if example.stdin is not None:
            delay, text = example.stdin
            _type_after(proc, delay, text)
        try:
            proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            chunks.append(f"\n<timed out after {RUN_TIMEOUT:.0f}s>\n")
        reader.join()
        _close(proc)
        out.append("".join(chunks) + f"<exit {proc.returncode}>\n")
    return "".join(out)


def _read_all(proc: subprocess.Popen[str], into: list[str]) -> None:
    assert proc.stdout is not None
    into.append(proc.stdout.read())


def _type_after(proc: subprocess.Popen[str], delay: float, text: str) -> None:
    """Type ``text`` on the program's keyboard after ``delay`` seconds, unless it ended."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        try:
            assert proc.stdin is not None
            proc.stdin.write(text)
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it finished meanwhile


def _close(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def normalise_stdout(example: Example, stdout: str) -> list[str]:
    lines = [line.rstrip() for line in stdout.splitlines() if line.strip()]
    if example.drop:
        lines = [line for line in lines if not re.search(example.drop, line)]
    # Sorted: each program prints from its client thread and its activity threads at once, so
    # the order of lines from different threads is the machine's; what was printed, and how
    # often, is compared. The order a workflow runs things in is the scenarios' business.
    return sorted(normalise(lines))
