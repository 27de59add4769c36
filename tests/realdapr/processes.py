"""Private real-Dapr processes for tests: Redis, placement, scheduler and daprd, on free ports.

Other work on the same machine uses the fixed ports `dapr run` and `tools/dapr/services.sh` use
(Redis 6379, placement 50005 with its Raft peer on 8201, scheduler 50006 with its etcd on
2379/2380, health 8080, metrics 9090), so nothing here ever binds a fixed port: every listener
gets a free port and every file goes under the directory it is given. ``conftest.py`` beside
this module wraps these in pytest fixtures; they are plain classes so a script can use them too.

The binaries are the ones `make dapr` lays out (``~/.dapr/bin``, or ``$DAPR_RUNTIME_PATH/.dapr/bin``
as for the Dapr CLI); Redis is Debian's ``redis-server``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO

START_TIMEOUT = 60.0  # seconds for a process to listen; placement and scheduler take 1-3 s


class ProcessError(RuntimeError):
    """A service did not start; the message names its log."""


def dapr_bin_dir() -> Path:
    runtime_path = os.environ.get("DAPR_RUNTIME_PATH")
    return (Path(runtime_path) if runtime_path else Path.home()) / ".dapr" / "bin"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProcessError(f"{name} exited with {proc.returncode}; see {log}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise ProcessError(
        f"{name} did not listen on port {port} within {START_TIMEOUT:.0f}s; see {log}"
    )


def install_redis() -> str:
    """Debian's redis-server, installed with apt when missing (as tools/dapr/services.sh does)."""
    found = shutil.which("redis-server")
    if found:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "redis-server"],
    ):
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, timeout=600)
    found = shutil.which("redis-server")
    if not found:
        raise ProcessError("apt-get installed redis-server but it is not on PATH")
    return found


class Service:
    """One child process with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, port: int, **popen: object):
        self.name = name
        self.port = port
        self.log = log
        self.argv = list(argv)
        self._popen = popen
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out: IO[bytes] = self.log.open("ab")
        try:
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not these
                **self._popen,
            )
        finally:
            out.close()
        assert self.proc is not None
        wait_for_port(self.port, self.proc, self.log, self.name)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or handed over."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)


class ControlPlane:
    """Redis, placement and scheduler for any number of daprds, all under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        bins = dapr_bin_dir()
        redis_port, placement_port, scheduler_port = free_port(), free_port(), free_port()
        self.redis = Service(
            "redis",
            [
                install_redis(),
                "--bind", "127.0.0.1", "--port", str(redis_port),
                "--dir", str(root), "--save", "", "--appendonly", "no",
                "--protected-mode", "yes", "--daemonize", "no",
            ],
            root / "redis.log",
            redis_port,
        )  # fmt: skip
        # Placement's Raft peer (default 127.0.0.1:8201) and its health server (8080) get free
        # ports too; metrics are off. The Raft log stays in memory.
        self.placement = Service(
            "placement",
            [
                str(bins / "placement"),
                "--listen-address", "127.0.0.1", "--port", str(placement_port),
                "--initial-cluster", f"dapr-placement-0=127.0.0.1:{free_port()}",
                "--healthz-listen-address", "127.0.0.1", "--healthz-port", str(free_port()),
                "--enable-metrics=false",
            ],
            root / "placement.log",
            placement_port,
        )  # fmt: skip
        # The scheduler embeds etcd, whose client and peer ports default to 2379 and 2380.
        self.scheduler = Service(
            "scheduler",
            [
                str(bins / "scheduler"),
                "--listen-address", "127.0.0.1", "--port", str(scheduler_port),
                "--healthz-listen-address", "127.0.0.1", "--healthz-port", str(free_port()),
                "--enable-metrics=false",
                "--etcd-data-dir", str(root / "etcd"),
                "--etcd-client-port", str(free_port()),
                "--etcd-initial-cluster", f"dapr-scheduler-server-0=http://localhost:{free_port()}",
                "--override-broadcast-host-port", f"localhost:{scheduler_port}",
            ],
            root / "scheduler.log",
            scheduler_port,
        )  # fmt: skip

    def start(self) -> None:
        try:
            for service in (self.redis, self.placement, self.scheduler):
                service.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for service in (self.scheduler, self.placement, self.redis):
            service.stop()

    def components_dir(self, directory: Path) -> Path:
        """A resources folder with the Redis actor state store on the private Redis (the same
        component as components/statestore.yaml, another address)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "statestore.yaml").write_text(
            "apiVersion: dapr.io/v1alpha1\n"
            "kind: Component\n"
            "metadata:\n"
            "  name: statestore\n"
            "spec:\n"
            "  type: state.redis\n"
            "  version: v1\n"
            "  metadata:\n"
            f'    - {{name: redisHost, value: "127.0.0.1:{self.redis.port}"}}\n'
            '    - {name: redisPassword, value: ""}\n'
            '    - {name: actorStateStore, value: "true"}\n'
        )
        return directory


class Daprd(Service):
    """One daprd for one app id, on free ports, against a ``ControlPlane``.

    ``stop``/``kill`` and ``start`` again keep the ports and the app id, so a restarted daprd
    is the same sidecar to its clients and finds its workflows in Redis.
    """

    def __init__(
        self,
        plane: ControlPlane,
        directory: Path,
        *,
        app_id: str | None = None,
        api_token: str | None = None,
        log_level: str = "warn",
    ) -> None:
        self.app_id = app_id or f"conf-{uuid.uuid4().hex[:10]}"
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.api_token = api_token
        directory.mkdir(parents=True, exist_ok=True)
        resources = plane.components_dir(directory / "components")
        config = directory / "config.yaml"
        # No tracing: nothing listens on Zipkin's port here.
        config.write_text(
            "apiVersion: dapr.io/v1alpha1\nkind: Configuration\n"
            "metadata:\n  name: conformance\nspec: {}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
        if api_token is not None:
            env["DAPR_API_TOKEN"] = api_token
        super().__init__(
            f"daprd {self.app_id}",
            [
                str(dapr_bin_dir() / "daprd"),
                "--app-id", self.app_id,
                "--dapr-grpc-port", str(self.grpc_port),
                "--dapr-http-port", str(self.http_port),
                "--dapr-internal-grpc-port", str(free_port()),
                "--dapr-listen-addresses", "127.0.0.1",
                "--enable-metrics=false",
                "--placement-host-address", f"127.0.0.1:{plane.placement.port}",
                "--scheduler-host-address", f"127.0.0.1:{plane.scheduler.port}",
                "--resources-path", str(resources),
                "--config", str(config),
                "--log-level", log_level,
                "--dapr-graceful-shutdown-seconds", "1",
            ],
            directory / "daprd.log",
            self.grpc_port,
            env=env,
        )  # fmt: skip

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        super().start()
        wait_for_http(self.http_port, "/v1.0/healthz", self.proc, self.log)


def wait_for_http(port: int, path: str, proc: subprocess.Popen[bytes] | None, log: Path) -> None:
    """Wait for a 2xx on ``path``: daprd's gRPC port listens before its APIs are ready, and
    ``/v1.0/healthz`` answers 500 until it watches the scheduler's hosts."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + START_TIMEOUT
    url = f"http://127.0.0.1:{port}{path}"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessError(f"daprd exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise ProcessError(f"daprd's {path} did not answer within {START_TIMEOUT:.0f}s; see {log}")
