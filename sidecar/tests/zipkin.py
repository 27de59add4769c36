"""A real Zipkin server for the tracing tests, and reading traces back from its API.

``zipkin_server()`` starts zipkin-server (tools/zipkin.sh: the jar from Maven Central, run with
the machine's JDK, in-memory storage) on a free loopback port and stops it afterwards; the
repository's conftest.py shares one per test session as the ``zipkin`` fixture. Traces are read
with Zipkin's v2 API, polled with a deadline: spans arrive in batches, seconds after they end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ZIPKIN_SH = REPO_ROOT / "tools" / "zipkin.sh"

Trace = list[dict[str, Any]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Zipkin:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.spans_endpoint = f"{self.url}/api/v2/spans"

    def get(self, path: str, **query: Any) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def traces_tagged(self, key: str, value: str) -> list[Trace]:
        """Every trace holding a span with tag ``key=value`` (within the last hour)."""
        return self.get(  # type: ignore[no-any-return]
            "/api/v2/traces", annotationQuery=f"{key}={value}", limit=100, lookback=3_600_000
        )

    def wait_for(
        self,
        fetch: Callable[[], list[Trace]],
        done: Callable[[list[Trace]], bool],
        timeout: float = 30,
    ) -> list[Trace]:
        """Poll ``fetch`` until ``done`` says the traces are complete; the last answer if not."""
        deadline = time.monotonic() + timeout
        traces = fetch()
        while not done(traces) and time.monotonic() < deadline:
            time.sleep(0.25)
            traces = fetch()
        return traces

    def config_file(self, path: Path, sampling_rate: str = "1") -> Path:
        """A Dapr Configuration that exports every trace to this Zipkin."""
        path.write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\n"
            f'spec:\n  tracing:\n    samplingRate: "{sampling_rate}"\n    zipkin:\n'
            f'      endpointAddress: "{self.spans_endpoint}"\n'
        )
        return path


@contextmanager
def zipkin_server() -> Iterator[Zipkin]:
    port = free_port()
    env = {**os.environ, "ZIPKIN_PORT": str(port)}
    started = subprocess.run(
        ["bash", str(ZIPKIN_SH), "start"], env=env, capture_output=True, text=True, check=False
    )
    try:
        assert started.returncode == 0, f"zipkin did not start: {started.stderr}"
        yield Zipkin(port)
    finally:
        subprocess.run(["bash", str(ZIPKIN_SH), "stop"], env=env, check=False)


# -- reading a trace -----------------------------------------------------------------------------


def by_id(trace: Trace) -> dict[str, dict[str, Any]]:
    return {span["id"]: span for span in trace}


def children(trace: Trace, span: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in trace if s.get("parentId") == span["id"]]


def named(trace: Trace, prefix: str) -> list[dict[str, Any]]:
    """Spans whose name starts with ``prefix`` (Zipkin stores names in lower case)."""
    return [s for s in trace if s["name"].startswith(prefix.lower())]


def parent_of(trace: Trace, span: dict[str, Any]) -> dict[str, Any] | None:
    return by_id(trace).get(span.get("parentId", ""))
