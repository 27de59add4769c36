"""tools/dapr/run_file.py reads dapr.yaml as `dapr run -f` does: what each daprd and each app is
given. No daprd is started here (`make dapr-smoke` runs the real thing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "run_file", ROOT / "tools" / "dapr" / "run_file.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_file"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


run_file = load_runner()


def apps_by_id() -> dict[str, object]:
    return {app.app_id: app for app in run_file.load_apps(ROOT / "dapr.yaml")}


def flag(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == name]


def test_web_app_reaches_the_worker_sidecar_for_workflow_calls():
    apps = apps_by_id()
    worker, web = apps["orders-worker"], apps["orders-web"]
    env = web.app_env()
    # The app's own env is applied after the CLI's variables, as the CLI does.
    assert env["DAPR_GRPC_PORT"] == str(worker.grpc_port) == "50010"
    assert env["DAPR_HTTP_PORT"] == str(worker.http_port) == "3510"
    assert env["APP_ID"] == "orders-web" and env["APP_PORT"] == "8000"
    assert web.grpc_port != worker.grpc_port  # the web keeps a sidecar of its own


def test_worker_sidecar_gets_the_pinned_ports_and_the_files_of_the_run_file():
    worker = apps_by_id()["orders-worker"]
    args = worker.daprd_args()
    assert flag(args, "--app-id") == ["orders-worker"]
    assert flag(args, "--dapr-grpc-port") == ["50010"]
    assert flag(args, "--dapr-http-port") == ["3510"]
    assert flag(args, "--app-port") == []  # the worker serves no app port
    assert flag(args, "--resources-path") == [str(ROOT / "components")]
    assert flag(args, "--config") == [str(ROOT / "config" / "dapr-config.yaml")]
    assert flag(args, "--placement-host-address") == ["localhost:50005"]
    assert flag(args, "--scheduler-host-address") == ["localhost:50006"]
    assert worker.app_env()["DAPR_GRPC_PORT"] == "50010"


def test_every_sidecar_port_is_distinct():
    ports = []
    for app in apps_by_id().values():
        ports += [app.http_port, app.grpc_port, app.metrics_port, app.internal_grpc_port]
    assert len(ports) == len(set(ports))


def test_unknown_run_file_key_is_refused(tmp_path: Path):
    (tmp_path / "dapr.yaml").write_text(
        "version: 1\napps:\n  - appID: a\n    appDirPath: .\n    appPrt: 8000\n"
    )
    with pytest.raises(run_file.RunFileError, match="appPrt"):
        run_file.load_apps(tmp_path / "dapr.yaml")


def test_common_section_applies_to_every_app(tmp_path: Path):
    (tmp_path / "dapr.yaml").write_text(
        "version: 1\ncommon:\n  logLevel: debug\n  env:\n    X: '1'\n"
        "apps:\n  - appID: a\n    appDirPath: .\n  - appID: b\n    appDirPath: .\n"
    )
    apps = run_file.load_apps(tmp_path / "dapr.yaml")
    assert [flag(app.daprd_args(), "--log-level") for app in apps] == [["debug"], ["debug"]]
    assert [app.app_env()["X"] for app in apps] == ["1", "1"]


def test_app_without_files_gets_the_slim_install_defaults(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DAPR_RUNTIME_PATH", str(tmp_path / "home"))
    (tmp_path / "dapr.yaml").write_text("version: 1\napps:\n  - appID: a\n    appDirPath: .\n")
    [app] = run_file.load_apps(tmp_path / "dapr.yaml")
    dapr_home = tmp_path / "home" / ".dapr"
    assert app.resources_paths == [dapr_home / "components"]
    assert app.config_file == dapr_home / "config.yaml"


def test_app_env_overrides_common_env_key_by_key(tmp_path: Path):
    (tmp_path / "dapr.yaml").write_text(
        "version: 1\ncommon:\n  env:\n    X: common\n    Y: common\n"
        "apps:\n  - appID: a\n    appDirPath: .\n    env:\n      X: app\n"
    )
    [app] = run_file.load_apps(tmp_path / "dapr.yaml")
    assert (app.app_env()["X"], app.app_env()["Y"]) == ("app", "common")
