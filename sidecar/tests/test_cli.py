"""``python -m sidecar``: start-up errors, signals, token enforcement, loopback binding.

Issue, "Running it": a clear one-line error for a port in use, an unwritable database or a
database from a newer schema; clean shutdown on SIGTERM/SIGINT; DAPR_API_TOKEN required from
clients when set; loopback only unless --host.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

import grpc
import psutil
import pytest
from dapr.ext.workflow import DaprWorkflowClient, WorkflowStatus
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf import empty_pb2

from sidecar import Sidecar
from sidecar.tests.harness import (
    WAIT,
    WorkflowApp,
    free_port,
    spawn_sidecar,
    spawn_worker,
    stop_process,
    subprocess_env,
    wait_for_port,
)
from sidecar.tests.worker_app import crash_chain_expected


def _run_to_exit(proc: subprocess.Popen[bytes], timeout: float = 20) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the sidecar did not exit") from None
    return proc.returncode, err.decode(errors="replace")


def _assert_one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no error message at all"
    last = lines[-1]
    for needle in needles:
        assert needle in last.lower(), f"{needle!r} not in {last!r}"


def test_cli_port_in_use_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        code, err = _run_to_exit(spawn_sidecar(port, tmp_path / "wf.db"))

    assert code != 0
    _assert_one_line_error(err, str(port))


def test_cli_unwritable_database_one_line_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("x")
    db = not_a_dir / "wf.db"  # its parent is a file: no one can create it, not even root

    code, err = _run_to_exit(spawn_sidecar(free_port(), db))

    assert code != 0
    _assert_one_line_error(err, "wf.db")


@pytest.mark.parametrize("delay", ["-1", "1001", "nan"])
def test_cli_commit_delay_out_of_range_one_line_error(tmp_path: Path, delay: str) -> None:
    code, err = _run_to_exit(
        spawn_sidecar(free_port(), tmp_path / "wf.db", "--commit-delay-ms", delay)
    )

    assert code != 0
    _assert_one_line_error(err, "--commit-delay-ms")
    assert not (tmp_path / "wf.db").exists()


def test_cli_newer_schema_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")

    code, err = _run_to_exit(spawn_sidecar(free_port(), db))

    assert code != 0
    _assert_one_line_error(err, "999")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 999
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    assert tables == []


def test_sidecar_newer_schema_raises_start_error(tmp_path: Path) -> None:
    from sidecar.server import SidecarStartError

    db = tmp_path / "future.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")

    with pytest.raises(SidecarStartError) as err:
        Sidecar(db_path=str(db), grpc_port=0).start()

    assert "\n" not in str(err.value)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_signal_exits_cleanly_with_worker_connected(tmp_path: Path, sig: int) -> None:
    port = free_port()
    proc = spawn_sidecar(port, tmp_path / "wf.db")
    worker = None
    try:
        wait_for_port(port, proc)
        worker = spawn_worker(port)
        proc.send_signal(sig)
        code, err = _run_to_exit(proc, timeout=15)
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(proc)

    assert code == 0, err
    assert "Traceback" not in err
    with sqlite3.connect(tmp_path / "wf.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_cli_listens_on_loopback_only_by_default(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn_sidecar(port, tmp_path / "wf.db")
    try:
        wait_for_port(port, proc)
        listening = [
            c.laddr
            for c in psutil.Process(proc.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
    finally:
        stop_process(proc)

    assert listening
    assert {addr.ip for addr in listening} <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    assert port in {addr.port for addr in listening}


def _hello(port: int, token: str | None) -> grpc.StatusCode:
    metadata = [("dapr-api-token", token)] if token is not None else None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            stubs.TaskHubSidecarServiceStub(ch).GetInstance(
                pb.GetInstanceRequest(instanceId="x"), metadata=metadata, timeout=5
            )
            stubs.TaskHubSidecarServiceStub(ch).Hello(
                empty_pb2.Empty(), metadata=metadata, timeout=5
            )
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


def test_cli_api_token_enforced_from_environment(tmp_path: Path) -> None:
    port = free_port()
    proc = spawn_sidecar(port, tmp_path / "wf.db", env=subprocess_env(DAPR_API_TOKEN="s3cret"))
    try:
        wait_for_port(port, proc)
        refused_none = _hello(port, None)
        refused_wrong = _hello(port, "wrong")
        allowed = _hello(port, "s3cret")
    finally:
        stop_process(proc)

    assert refused_none == grpc.StatusCode.UNAUTHENTICATED
    assert refused_wrong == grpc.StatusCode.UNAUTHENTICATED
    assert allowed == grpc.StatusCode.OK


def test_api_token_sdk_refused_then_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = Sidecar(db_path=str(tmp_path / "wf.db"), grpc_port=0, api_token="s3cret")
    sidecar.start()
    try:
        # Refused: an SDK client without the token.
        anonymous = WorkflowApp(sidecar.grpc_address)
        try:
            with pytest.raises(grpc.RpcError) as err:
                anonymous.client.schedule_new_workflow("anything")
        finally:
            anonymous.close()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "Unauthorized"  # daprd's answer (tests/realdapr)

        # Allowed: the SDK sends DAPR_API_TOKEN from the environment on every call.
        monkeypatch.setenv("DAPR_API_TOKEN", "s3cret")
        app = WorkflowApp(sidecar.grpc_address)

        @app.runtime.workflow(name="guarded")
        def guarded(ctx, _):
            return "in"

        try:
            client = app.start()
            iid = client.schedule_new_workflow(guarded)
            state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        finally:
            app.close()  # before the sidecar stops: its runtime would retry a dead port
    finally:
        sidecar.stop()

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert state.serialized_output == '"in"'
    assert list(Path(tmp_path).glob("wf.db"))


def test_cli_program_written_for_daprd_runs_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    proc = spawn_sidecar(port, tmp_path / "wf.db")
    worker = None
    try:
        wait_for_port(port, proc)
        worker = spawn_worker(port)  # WorkflowRuntime() with no arguments: DAPR_GRPC_PORT
        monkeypatch.setenv("DAPR_GRPC_PORT", str(port))
        client = DaprWorkflowClient()
        iid = client.schedule_new_workflow("crash_chain", input=4)
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        client.close()
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(proc)

    assert state is not None
    assert state.runtime_status == WorkflowStatus.COMPLETED
    assert json.loads(state.serialized_output) == crash_chain_expected(4)
