"""The app as `dapr run -f .` runs it, on real daprd and on private ports, each process in reach.

tools/dapr/run_file.py reads dapr.yaml as the Dapr CLI does: each daprd's flags, each app's
command and environment. This module starts those same processes, with three changes so that a
test never collides with a `make dapr-run` (or anything else) on the machine:

- every port dapr.yaml fixes (the worker's daprd on 3510/50010, the web on 8000) becomes a free
  one, wherever the file names it (sidecar flags, the web's DAPR_* overrides, gunicorn's bind);
- both daprds use a private Redis, placement and scheduler (``ControlPlane``): the file's
  components/ and config/ are copied with only their addresses changed (the Redis host, and
  Zipkin's endpoint, pointed at a port where nothing listens);
- the apps get the test's environment (a temporary ``ORDERS_VAR_DIR``, approval settings,
  passwords), as `dapr run` passes on the environment it is started from.

Each daprd and each app is a process of its own, so a test can kill -9 one and start it again
with the same ports and environment, as a process manager would.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import yaml

from .processes import ControlPlane, free_port

ROOT = Path(__file__).resolve().parents[2]
WORKER, WEB = "orders-worker", "orders-web"
START_TIMEOUT = 120.0
# The ports dapr.yaml may fix, by run-file key.
PORT_KEYS = ("appPort", "daprHTTPPort", "daprGRPCPort", "daprInternalGRPCPort", "metricsPort")


def load_run_file() -> ModuleType:
    """tools/dapr/run_file.py (a script, not a package) as a module."""
    if "run_file" in sys.modules:
        return sys.modules["run_file"]
    spec = importlib.util.spec_from_file_location(
        "run_file", ROOT / "tools" / "dapr" / "run_file.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_file"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll ``condition`` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def fixed_ports(run_file: Path) -> dict[int, int]:
    """Every port the run file fixes, each mapped to a free one."""
    spec = yaml.safe_load(run_file.read_text())
    sections = [spec.get("common") or {}, *(spec.get("apps") or [])]
    named = {int(section[key]) for section in sections for key in PORT_KEYS if section.get(key)}
    return {port: free_port() for port in sorted(named)}


def moved(text: str, ports: dict[int, int]) -> str:
    """``text`` with each fixed port, as a whole number, replaced by its free one."""
    return re.sub(r"\b\d+\b", lambda m: str(ports.get(int(m.group()), m.group())), text)


def private_copy(source: Path, target: Path, redis_port: int) -> Path:
    """A copy of a resources folder or Configuration file with local addresses made private:
    the Redis host of a Redis component, and a Zipkin endpoint."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        target.mkdir(exist_ok=True)
        for path in sorted(source.glob("*.y*ml")):
            private_copy(path, target / path.name, redis_port)
        return target
    documents = [doc for doc in yaml.safe_load_all(source.read_text()) if doc]
    for doc in documents:
        spec = doc.get("spec") or {}
        for item in spec.get("metadata") or []:
            if item.get("name") == "redisHost":
                item["value"] = f"127.0.0.1:{redis_port}"
        zipkin = (spec.get("tracing") or {}).get("zipkin")
        if zipkin:
            zipkin["endpointAddress"] = f"http://127.0.0.1:{free_port()}/api/v2/spans"
    target.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return target


class Process:
    """One command, its log, and the means to stop it gently or kill it as a crash would."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], log: Path):
        self.name, self.argv, self.cwd, self.env, self.log = name, argv, cwd, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def family(self) -> list[psutil.Process]:
        """The process and every descendant (runworker starts its children in new sessions)."""
        if not self.running:
            return []
        assert self.proc is not None
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the process and its descendants: a crash, nothing handed over."""
        for member in self.family():
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, as `dapr run` stops its apps; whatever is left after ``timeout`` is killed."""
        family = self.family()
        if not family:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        for member in family:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(10)


@dataclasses.dataclass
class Sidecar:
    process: Process
    grpc_port: int
    http_port: int

    def start(self) -> None:
        self.process.start()
        url = f"http://127.0.0.1:{self.http_port}/v1.0/healthz/outbound"
        wait_for(f"{self.process.name} to serve", lambda: self._healthy(url), START_TIMEOUT)

    def _healthy(self, url: str) -> bool:
        if not self.process.running:
            raise AssertionError(f"{self.process.name} exited; see {self.process.log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError):
            return False

    def metadata(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/v1.0/metadata"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())


class AppRun:
    """dapr.yaml's apps, each next to its daprd, on private ports (see the module's docstring)."""

    def __init__(self, plane: ControlPlane, directory: Path, env: dict[str, str]) -> None:
        run_file = load_run_file()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.ports = fixed_ports(ROOT / "dapr.yaml")
        self.sidecars: dict[str, Sidecar] = {}
        self.apps: dict[str, Process] = {}
        self.order: list[str] = []
        self.run_apps: dict[str, Any] = {}  # run_file.App, as dapr.yaml says with ports moved
        for app in run_file.load_apps(ROOT / "dapr.yaml"):
            app = self._private(app, plane)
            self.order.append(app.app_id)
            self.run_apps[app.app_id] = app
            daprd = Process(
                f"daprd of {app.app_id}",
                [str(run_file.daprd_path()), *app.daprd_args()],
                app.directory,
                {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")},
                directory / f"{app.app_id}-daprd.log",
            )
            self.sidecars[app.app_id] = Sidecar(daprd, app.grpc_port, app.http_port)
            if app.command:
                self.apps[app.app_id] = Process(
                    app.app_id,
                    app.command,
                    app.directory,
                    self._app_env(app, env),
                    directory / f"{app.app_id}.log",
                )
        self.web_url = f"http://127.0.0.1:{self.ports[8000]}"

    def _private(self, app: Any, plane: ControlPlane) -> Any:
        resources = [
            private_copy(path, self.directory / f"{app.app_id}-resources-{n}", plane.redis.port)
            for n, path in enumerate(app.resources_paths)
        ]
        config = private_copy(
            app.config_file, self.directory / f"{app.app_id}-config.yaml", plane.redis.port
        )
        return dataclasses.replace(
            app,
            app_port=self.ports.get(app.app_port, app.app_port),
            http_port=self.ports.get(app.http_port, app.http_port),
            grpc_port=self.ports.get(app.grpc_port, app.grpc_port),
            metrics_port=self.ports.get(app.metrics_port, app.metrics_port),
            internal_grpc_port=self.ports.get(app.internal_grpc_port, app.internal_grpc_port),
            command=[moved(part, self.ports) for part in app.command],
            env={key: moved(value, self.ports) for key, value in app.env.items()},
            resources_paths=resources,
            config_file=config,
            placement=f"127.0.0.1:{plane.placement.port}",
            scheduler=f"127.0.0.1:{plane.scheduler.port}",
        )

    @staticmethod
    def _app_env(app: Any, extra: dict[str, str]) -> dict[str, str]:
        """What `dapr run` gives the app (run_file.py's App.app_env), minus whatever DAPR_* or
        DATABASE_URL this test process itself inherited, plus the test's settings."""
        env = app.app_env()
        own = {"DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "DAPR_METRICS_PORT", *app.env}
        for key in list(env):
            if (key.startswith("DAPR_") and key not in own) or key == "DATABASE_URL":
                del env[key]
        return {**env, "PYTHONUNBUFFERED": "1", **extra}

    # --- the whole run ----------------------------------------------------------------------

    def start(self) -> AppRun:
        """In dapr.yaml's order: each daprd, then its app (the worker first: the web sends its
        workflow calls to the worker's daprd). Returns once the site serves and the worker has
        connected to its daprd."""
        try:
            for app_id in self.order:
                self.sidecars[app_id].start()
                if app_id in self.apps:
                    self.apps[app_id].start()
            self.wait_until_worker_connected()
            wait_for("the site to serve", self.site_serves, START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Apps first, then their sidecars, as `dapr run` stops on Ctrl-C."""
        for app_id in reversed(self.order):
            if app_id in self.apps:
                self.apps[app_id].stop()
        for app_id in reversed(self.order):
            self.sidecars[app_id].process.stop()

    # --- what a test waits for ----------------------------------------------------------------

    def site_serves(self) -> bool:
        web = self.apps[WEB]
        if not web.running:
            raise AssertionError(f"the web app exited; see {web.log}")
        try:
            with urllib.request.urlopen(self.web_url + "/", timeout=5) as response:
                return response.status < 500
        except urllib.error.HTTPError as error:
            return error.code < 500
        except (urllib.error.URLError, OSError):
            return False

    def worker_connected(self) -> bool:
        """The worker's daprd hosts the workflow actors once a worker holds its work-item
        stream (daprd registers them when the stream opens)."""
        worker = self.apps[WORKER]
        if not worker.running:
            raise AssertionError(f"the worker exited; see {worker.log}")
        try:
            actors = self.sidecars[WORKER].metadata().get("actorRuntime") or {}
        except (urllib.error.URLError, OSError):
            return False
        types = {entry.get("type", "") for entry in actors.get("activeActors") or []}
        return any(t.endswith(f".{WORKER}.workflow") for t in types)

    def wait_until_worker_connected(self) -> None:
        wait_for("the worker to connect to its daprd", self.worker_connected, START_TIMEOUT)

    def fixed_ports_left(self) -> set[int]:
        """Fixed ports of dapr.yaml still named by a daprd's flags, an app's command or the
        variables dapr.yaml gives an app."""
        texts = [" ".join(s.process.argv) for s in self.sidecars.values()]
        texts += [" ".join(p.argv) for p in self.apps.values()]
        texts += [f"{k}={v}" for app in self.run_apps.values() for k, v in app.env.items()]
        found = {int(n) for text in texts for n in re.findall(r"\b\d+\b", text)}
        return found & set(self.ports)
