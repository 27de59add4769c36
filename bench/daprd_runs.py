"""Real daprd under the benchmark: one daprd, 1..n worker processes, the client here.

daprd keeps workflow state in actors, so it needs an actor state store (Redis), placement and
scheduler. The benchmark starts private ones on free ports under its work directory, never the
fixed ports `dapr init` and tools/dapr/services.sh use (6379, 50005, 50006, etcd's 2379/2380,
raft's 8201): other processes on the machine may hold those. Each is stopped after the row.

Redis runs as tools/dapr/services.sh runs it for `make dapr-run`: an append-only file with
Redis's default fsync policy (once a second), so daprd's acknowledged steps are as durable as
that setting, not fsynced one by one as the sidecar's are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.dapr_runs import start_worker
from bench.util import BenchError, free_port, peak_rss_mb, stop_process, wait_port

APP_ID = "bench-daprd"


def dapr_bin(name: str) -> Path:
    """Where `make dapr` (as `dapr init --slim`) lays the binaries out: ~/.dapr/bin, or
    $DAPR_RUNTIME_PATH/.dapr/bin as the Dapr CLI reads it."""
    runtime_path = os.environ.get("DAPR_RUNTIME_PATH")
    return (Path(runtime_path) if runtime_path else Path.home()) / ".dapr" / "bin" / name


def why_unavailable() -> str | None:
    """None when the daprd row can run, else why not (the row is skipped with that note)."""
    for name in ("daprd", "placement", "scheduler"):
        if not dapr_bin(name).exists():
            return f"no {dapr_bin(name)}: `make dapr` builds it"
    if shutil.which("redis-server") is None:
        return "no redis-server: `make dapr-services` installs Debian's"
    return None


def daprd_version() -> str | None:
    if not dapr_bin("daprd").exists():
        return None
    done = subprocess.run(
        [str(dapr_bin("daprd")), "--version"], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip() or None


STATE_STORE = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
    - name: redisHost
      value: "127.0.0.1:{port}"
    - name: redisPassword
      value: ""
    - name: actorStateStore
      value: "true"
"""

# No tracing: the sidecar rows trace nothing either.
CONFIGURATION = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: bench
spec: {}
"""


@dataclass
class DaprServices:
    """Private Redis, placement and scheduler for one daprd row, data and logs in ``directory``."""

    directory: Path
    log: IO[Any]
    redis_port: int = 0
    placement_port: int = 0
    scheduler_port: int = 0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self) -> DaprServices:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        (self.directory / "redis").mkdir(exist_ok=True)
        self._spawn(
            "redis",
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port)]
            + ["--dir", str(self.directory / "redis"), "--appendonly", "yes", "--save", ""],
            self.redis_port,
        )
        # Health servers on free ports, metrics off: both would otherwise take 8080 and 9090.
        quiet = ["--listen-address", "127.0.0.1", "--healthz-listen-address", "127.0.0.1"]
        quiet += ["--enable-metrics=false"]
        self.placement_port = free_port()
        self._spawn(
            "placement",
            [str(dapr_bin("placement")), "--port", str(self.placement_port), *quiet]
            + ["--healthz-port", str(free_port())]
            + ["--initial-cluster", f"dapr-placement-0=127.0.0.1:{free_port()}"],
            self.placement_port,
        )
        # The embedded etcd's peer port comes from the initial cluster's entry for this id.
        self.scheduler_port = free_port()
        self._spawn(
            "scheduler",
            [str(dapr_bin("scheduler")), "--port", str(self.scheduler_port), *quiet]
            + ["--healthz-port", str(free_port())]
            + ["--etcd-data-dir", str(self.directory / "scheduler")]
            + ["--etcd-client-listen-address", "127.0.0.1"]
            + ["--etcd-client-port", str(free_port())]
            + ["--etcd-initial-cluster", f"dapr-scheduler-server-0=http://127.0.0.1:{free_port()}"]
            + ["--override-broadcast-host-port", f"127.0.0.1:{self.scheduler_port}"],
            self.scheduler_port,
        )
        return self

    def _spawn(self, name: str, command: list[str], port: int) -> None:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, text=True
        )
        self.procs[name] = proc
        wait_port(port, proc, timeout=120)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            stop_process(proc)


@dataclass
class DaprdSystem:
    """Private services, one daprd and its worker processes (``python -m bench.dapr_worker``,
    the same as the sidecar rows'); start() returns once all are serving, and the ``with`` block
    stops them. ``port`` is daprd's gRPC port, where the workers and the client connect."""

    directory: Path
    workers: int
    log: IO[Any]
    port: int = 0
    http_port: int = 0
    started_in_s: float = 0.0
    services: DaprServices | None = None
    daprd: Any = None
    worker_procs: list[Any] = field(default_factory=list)

    def start(self) -> DaprdSystem:
        """Start everything (all stopped again if one part fails to start)."""
        began = time.perf_counter()
        try:
            self.services = DaprServices(self.directory, self.log).start()
            self._start_daprd()
            self.started_in_s = time.perf_counter() - began
            for _ in range(self.workers):
                self.worker_procs.append(start_worker(self.port, self.log))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_daprd(self) -> None:
        assert self.services is not None
        resources = self.directory / "resources"
        resources.mkdir(exist_ok=True)
        (resources / "statestore.yaml").write_text(
            STATE_STORE.format(port=self.services.redis_port)
        )
        config = self.directory / "config.yaml"
        config.write_text(CONFIGURATION)
        self.port, self.http_port = free_port(), free_port()
        command = [str(dapr_bin("daprd")), "--app-id", APP_ID, "--log-level", "warn"]
        command += ["--dapr-listen-addresses", "127.0.0.1"]
        command += ["--dapr-grpc-port", str(self.port), "--dapr-http-port", str(self.http_port)]
        command += ["--dapr-internal-grpc-port", str(free_port()), "--enable-metrics=false"]
        command += ["--placement-host-address", f"127.0.0.1:{self.services.placement_port}"]
        command += ["--scheduler-host-address", f"127.0.0.1:{self.services.scheduler_port}"]
        command += ["--resources-path", str(resources), "--config", str(config)]
        self.daprd = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, text=True
        )
        wait_healthy(self.http_port, self.daprd)

    def check_alive(self) -> None:
        procs = [self.daprd, *self.worker_procs]
        if self.services is not None:
            procs += list(self.services.procs.values())
        for proc in procs:
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"{proc.args!r} exited with {proc.returncode} during the run")

    def engine_pids(self) -> list[int]:
        """daprd and what it keeps its state in and schedules with: the engine's processes."""
        assert self.services is not None
        return [self.daprd.pid, *(p.pid for p in self.services.procs.values())]

    def pids(self) -> dict[str, list[int]]:
        return {"sidecar": self.engine_pids(), "workers": [p.pid for p in self.worker_procs]}

    def peak_rss(self) -> dict[str, Any]:
        """The engine's figure is the sum of its processes' peaks (daprd, Redis, placement,
        scheduler), as the sidecar's one process holds all of that."""
        return {
            "sidecar": round(sum(peak_rss_mb(pid) for pid in self.engine_pids()), 1),
            "workers": [round(peak_rss_mb(p.pid), 1) for p in self.worker_procs],
        }

    def stop(self) -> None:
        for proc in self.worker_procs:
            stop_process(proc)
        if self.daprd is not None:
            stop_process(self.daprd)
        if self.services is not None:
            self.services.stop()

    def __enter__(self) -> DaprdSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_healthy(http_port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """daprd's /v1.0/healthz answers 204 once its components and actor runtime are up."""
    url = f"http://127.0.0.1:{http_port}/v1.0/healthz"
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"daprd exited with {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 204:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as error:
            last = f"status {error.code}: {json.dumps(error.read().decode()[:200])}"
        except OSError as error:
            last = repr(error)
        time.sleep(0.2)
    raise BenchError(f"daprd not healthy after {timeout:.0f}s ({last})")
