"""Run a Multi-App Run file (dapr.yaml) the way `dapr run -f` does, without the Dapr CLI.

The Go module proxy serves the sources of daprd, placement and scheduler but not those of the Dapr
CLI (github.com/dapr/cli), so `make dapr` cannot always build the CLI. This runner does the part
of `dapr run -f .` this project uses: for each app in order, a daprd with the flags and defaults
the CLI gives it, then the app's command with the environment the CLI sets, its output prefixed
`== APP - <app id> ==` and copied, like daprd's, to `.dapr/logs/` beside the run file. The flags,
defaults and variables follow the Dapr CLI's run configuration (dapr/cli pkg/standalone/run.go,
pkg/runfileconfig, cmd/run.go); keys it does not know are refused rather than ignored.

Ctrl-C (SIGINT) or SIGTERM stops the apps, then their sidecars. Unlike the CLI, a daprd or an app
that exits on its own stops the whole run with exit status 1, so a smoke test sees it at once.

    .venv/bin/python tools/dapr/run_file.py [dapr.yaml or its folder]
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

# dapr.yaml keys this runner reads (the CLI's yaml tags, dapr/cli pkg/standalone/run.go).
SUPPORTED_KEYS = {
    "appID", "appDirPath", "appPort", "appProtocol", "command", "configFilePath",
    "daprHTTPPort", "daprGRPCPort", "daprInternalGRPCPort", "metricsPort", "env",
    "logLevel", "placementHostAddress", "resourcesPaths", "schedulerHostAddress",
}  # fmt: skip
# The standalone defaults `dapr run` passes (run.go: tag defaults, validatePlacementHostAddr,
# cmd/run.go validateSchedulerHostAddress for runtimes after 1.15).
PLACEMENT_ADDRESS = "localhost:50005"
SCHEDULER_ADDRESS = "localhost:50006"


class RunFileError(Exception):
    pass


def daprd_path() -> Path:
    """daprd where `dapr init --slim` (or `make dapr`) puts it, as the CLI looks it up."""
    return dapr_home() / "bin" / "daprd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class App:
    """One app of the run file, with its ports settled."""

    app_id: str
    directory: Path
    command: list[str]
    app_port: int
    http_port: int
    grpc_port: int
    metrics_port: int
    internal_grpc_port: int
    resources_paths: list[Path]
    config_file: Path
    app_protocol: str
    log_level: str
    placement: str
    scheduler: str
    env: dict[str, str] = field(default_factory=dict)

    def daprd_args(self) -> list[str]:
        args = ["--app-id", self.app_id]
        if self.app_port > 0:
            args += ["--app-port", str(self.app_port)]
        args += [
            "--app-protocol", self.app_protocol,
            "--dapr-http-port", str(self.http_port),
            "--dapr-grpc-port", str(self.grpc_port),
            "--dapr-internal-grpc-port", str(self.internal_grpc_port),
            "--metrics-port", str(self.metrics_port),
            "--log-level", self.log_level,
            "--app-max-concurrency", "-1",
            "--max-body-size", "4Mi",
            "--read-buffer-size", "4Ki",
        ]  # fmt: skip
        args += ["--config", str(self.config_file)]
        for path in self.resources_paths:
            args += ["--resources-path", str(path)]
        if self.placement:
            args += ["--placement-host-address", self.placement]
        if self.scheduler:
            args += ["--scheduler-host-address", self.scheduler]
        return args

    def app_env(self) -> dict[str, str]:
        """The CLI's variables first, then the app's own `env`, which wins (run.go getEnv)."""
        env = {
            **os.environ,
            "APP_ID": self.app_id,
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "DAPR_METRICS_PORT": str(self.metrics_port),
            "APP_PROTOCOL": self.app_protocol,
        }
        if self.app_port > 0:
            env["APP_PORT"] = str(self.app_port)
        return {**env, **self.env}


def dapr_home() -> Path:
    runtime_path = os.environ.get("DAPR_RUNTIME_PATH")
    return (Path(runtime_path) if runtime_path else Path.home()) / ".dapr"


def resources_paths(
    app: dict[str, Any], common: dict[str, Any], base: Path, directory: Path
) -> list[Path]:
    """The CLI's precedence (pkg/runfileconfig): the app's own paths, its .dapr/resources folder,
    the common section's, then the default components folder."""
    if app.get("resourcesPaths"):
        return [directory / path for path in app["resourcesPaths"]]
    if (directory / ".dapr" / "resources").is_dir():
        return [directory / ".dapr" / "resources"]
    if common.get("resourcesPaths"):
        return [base / path for path in common["resourcesPaths"]]
    return [dapr_home() / "components"]


def config_file(app: dict[str, Any], common: dict[str, Any], base: Path, directory: Path) -> Path:
    """Likewise: the app's file, its .dapr/config.yaml, the common section's, the default one."""
    if app.get("configFilePath"):
        return directory / app["configFilePath"]
    if (directory / ".dapr" / "config.yaml").is_file():
        return directory / ".dapr" / "config.yaml"
    if common.get("configFilePath"):
        return base / common["configFilePath"]
    return dapr_home() / "config.yaml"


def load_apps(run_file: Path) -> list[App]:
    spec = yaml.safe_load(run_file.read_text()) or {}
    base = run_file.parent
    common = spec.get("common") or {}
    apps = []
    for raw in spec.get("apps") or []:
        merged: dict[str, Any] = {**common, **raw}
        unknown = set(merged) - SUPPORTED_KEYS
        if unknown:
            raise RunFileError(f"{run_file}: run_file.py does not handle {sorted(unknown)}")
        if "appID" not in merged or "appDirPath" not in merged:
            raise RunFileError(f"{run_file}: every app needs appID and appDirPath")
        directory = (base / merged["appDirPath"]).resolve()
        # Env maps merge key by key, the app's value winning (the CLI's mergeCommonAndAppsEnv).
        env = {**(common.get("env") or {}), **(raw.get("env") or {})}
        apps.append(
            App(
                app_id=merged["appID"],
                directory=directory,
                command=[str(part) for part in merged.get("command") or []],
                app_port=int(merged.get("appPort") or 0),
                http_port=int(merged.get("daprHTTPPort") or 0) or free_port(),
                grpc_port=int(merged.get("daprGRPCPort") or 0) or free_port(),
                metrics_port=int(merged.get("metricsPort") or 0) or free_port(),
                internal_grpc_port=int(merged.get("daprInternalGRPCPort") or 0) or free_port(),
                resources_paths=resources_paths(raw, common, base, directory),
                config_file=config_file(raw, common, base, directory),
                app_protocol=merged.get("appProtocol") or "http",
                log_level=merged.get("logLevel") or "info",
                placement=merged.get("placementHostAddress", PLACEMENT_ADDRESS) or "",
                scheduler=merged.get("schedulerHostAddress", SCHEDULER_ADDRESS) or "",
                env={key: str(value) for key, value in env.items()},
            )
        )
    if not apps:
        raise RunFileError(f"{run_file}: no apps to run")
    return apps


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RunFileError(f"exited with status {process.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RunFileError(f"port {port} did not open within {seconds:.0f}s")


def copy_output(source: IO[bytes], prefix: str, log: IO[bytes]) -> None:
    """The app's lines to the terminal with the CLI's prefix, and unprefixed to its log file."""
    for line in iter(source.readline, b""):
        log.write(line)
        log.flush()
        sys.stdout.buffer.write(prefix.encode() + line)
        sys.stdout.flush()


class Run:
    def __init__(self, run_file: Path) -> None:
        self.run_file = run_file
        self.logs = run_file.parent / ".dapr" / "logs"
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = threading.Event()

    def start(self, app: App) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        daprd_log = (self.logs / f"{app.app_id}_daprd_{stamp}.log").open("ab")
        daprd = subprocess.Popen(
            [str(daprd_path()), *app.daprd_args()],
            cwd=app.directory,
            stdout=daprd_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((f"daprd of {app.app_id}", daprd))
        try:
            wait_for_port(app.grpc_port, daprd, 60)
        except RunFileError as error:
            raise RunFileError(f"daprd of {app.app_id} {error}; see {daprd_log.name}") from None
        print(
            f"run_file.py: started daprd for {app.app_id!r}: HTTP port {app.http_port}, "
            f"gRPC port {app.grpc_port}; its log is {daprd_log.name}",
            flush=True,
        )
        if not app.command:
            return
        app_log = (self.logs / f"{app.app_id}_app_{stamp}.log").open("ab")
        process = subprocess.Popen(
            app.command,
            cwd=app.directory,
            env=app.app_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append((app.app_id, process))
        assert process.stdout is not None
        prefix = f"== APP - {app.app_id} == "
        threading.Thread(
            target=copy_output, args=(process.stdout, prefix, app_log), daemon=True
        ).start()

    def watch(self) -> int:
        """Until a signal (status 0) or until a process exits by itself (status 1)."""
        while not self.stopping.wait(0.5):
            for name, process in self.processes:
                if process.poll() is not None:
                    print(f"run_file.py: {name} exited with status {process.returncode}")
                    return 1
        return 0

    def stop(self) -> None:
        """Apps first, then the sidecars (reverse start order), each by its process group."""
        for name, process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    print(f"run_file.py: {name} did not stop in 15s; killing it")
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else ".").resolve()
    run_file = target / "dapr.yaml" if target.is_dir() else target
    if not daprd_path().exists():
        print(f"run_file.py: no {daprd_path()}: run `make dapr` first", file=sys.stderr)
        return 1
    run = Run(run_file)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: run.stopping.set())
    try:
        for app in load_apps(run_file):
            run.start(app)
        status = run.watch()
    except RunFileError as error:
        print(f"run_file.py: {error}", file=sys.stderr)
        status = 1
    finally:
        run.stop()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
