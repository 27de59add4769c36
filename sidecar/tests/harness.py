"""Test harness for the sidecar conformance suite (no fixtures here; see conftest.py).

``WorkflowApp`` is a workflow application as a user writes it: a ``WorkflowRuntime`` (the
worker) and a ``DaprWorkflowClient``, both pointed at one sidecar address. ``RawWorker`` speaks
the work-item stream by hand, for requests the SDK would never send.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from dapr.ext.workflow import DaprWorkflowClient, WorkflowRuntime
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb
from google.protobuf import empty_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2

from sidecar import Sidecar

REPO_ROOT = Path(__file__).resolve().parents[2]

# Generous upper bound for any single wait on a workflow; tests normally finish in well under
# a second per instance. The per-test timeout (pyproject: 180 s) backs this up.
WAIT = 30


def sidecar_start(db_path: Path, **kwargs: Any) -> Sidecar:
    """An in-process sidecar on ``db_path``, listening on a free port unless told otherwise."""
    kwargs.setdefault("grpc_port", 0)
    sidecar = Sidecar(db_path=str(db_path), **kwargs)
    sidecar.start()
    return sidecar


def split_address(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return host, port


def new_runtime(address: str, **kwargs: Any) -> WorkflowRuntime:
    host, port = split_address(address)
    runtime = WorkflowRuntime(host=host, port=port, worker_ready_timeout=15, **kwargs)
    # The SDK waits up to 30 s for its worker thread on stop; a test that fails mid-flight
    # should not add 30 s to the run. (WorkflowRuntime has no public knob for it.)
    runtime._WorkflowRuntime__worker._stop_timeout = 5  # type: ignore[attr-defined]
    return runtime


def new_client(address: str) -> DaprWorkflowClient:
    host, port = split_address(address)
    return DaprWorkflowClient(host=host, port=port)


class WorkflowApp:
    """A workflow application (runtime + client) connected to one sidecar address."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.runtime = new_runtime(address)
        self._started: list[WorkflowRuntime] = []
        self._clients: list[DaprWorkflowClient] = []
        self._client: DaprWorkflowClient | None = None

    @property
    def client(self) -> DaprWorkflowClient:
        if self._client is None:
            self._client = self.new_client()
        return self._client

    def new_client(self, address: str | None = None) -> DaprWorkflowClient:
        client = new_client(address or self.address)
        self._clients.append(client)
        return client

    def start(self, runtime: WorkflowRuntime | None = None) -> DaprWorkflowClient:
        rt = runtime or self.runtime
        # Recorded first: a start that fails (or is interrupted) has already started the
        # worker's thread, which only ``close`` then stops.
        self._started.append(rt)
        rt.start()
        return self.client

    def stop_runtime(self, runtime: WorkflowRuntime | None = None) -> None:
        rt = runtime or self.runtime
        if rt in self._started:
            self._started.remove(rt)
            rt.shutdown()

    def new_runtime(self, address: str | None = None) -> WorkflowRuntime:
        """Another worker (a restart with new code); register on it, then ``start(rt)``."""
        return new_runtime(address or self.address)

    def close(self) -> None:
        for rt in list(self._started):
            try:
                rt.shutdown()
            except Exception:  # teardown must still reach the sidecar's stop
                pass
        self._started.clear()
        for client in self._clients:
            client.close()


def history_types(client: DaprWorkflowClient, instance_id: str) -> list[str]:
    """Event types of the instance's committed history, as protobuf field names."""
    return [e.event_type.value for e in client.get_workflow_history(instance_id)]


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, step: float = 0.02) -> bool:
    """Poll ``predicate``, for conditions no SDK call can wait on (a counter, a file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class HandledResults:
    """Every activity result the sidecar has finished handling, kept or dropped.

    A stale result (from an earlier generation, or for an instance that has ended) is dropped
    without a trace a client could see, so a test that must know it arrived before going on
    watches the engine's ``complete_activity`` (the real one still runs).
    """

    def __init__(self, sidecar: Sidecar) -> None:
        engine = sidecar.engine
        original = engine.complete_activity
        self._changed = threading.Condition()
        self.results: list[pb.ActivityResponse] = []

        async def recording(response: pb.ActivityResponse) -> None:
            try:
                await original(response)
            finally:
                with self._changed:
                    self.results.append(response)
                    self._changed.notify_all()

        engine.complete_activity = recording  # type: ignore[method-assign]

    def wait_for(self, result: str, timeout: float = WAIT) -> bool:
        """Wait until a result whose JSON text is ``result`` has been handled."""
        with self._changed:
            return self._changed.wait_for(
                lambda: any(r.result.value == result for r in self.results), timeout
            )


def inbox_kinds(sidecar: Sidecar, instance_id: str) -> list[str]:
    """Event types waiting in an active instance's inbox for its next turn (the sidecar keeps
    them in memory; no client call shows them)."""
    inst = sidecar.engine.instances.get(instance_id)
    return [] if inst is None else [e.WhichOneof("eventType") for _, e in list(inst.inbox)]


def parked_waiters(sidecar: Sidecar, instance_id: str) -> int:
    """Client calls parked in the sidecar until the instance reaches a state (WaitForInstance*,
    suspend, terminate); none shows to a client while it waits."""
    waiters = list(sidecar.engine._waiters.get(instance_id, ()))
    return sum(not answer.done() for _, answer in waiters)


def open_streams(sidecar: Sidecar) -> int:
    """Work-item streams the sidecar holds open (its log says "worker connected" and
    "worker disconnected" for each)."""
    return len(sidecar.engine.dispatch.streams)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run a blocking call (a wait, a terminate) on a daemon thread; its result or error lands
    in the returned box."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the test through the box
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


class RawWorker:
    """A hand-driven worker on a raw GetWorkItems stream (no SDK executor)."""

    def __init__(self, stub: stubs.TaskHubSidecarServiceStub) -> None:
        self.stub = stub
        stub.Hello(empty_pb2.Empty(), timeout=10)
        self._items: queue.Queue[Any] = queue.Queue()
        self._stream = stub.GetWorkItems(pb.GetWorkItemsRequest())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for item in self._stream:
                self._items.put(item)
        except grpc.RpcError:
            pass

    def next_item(self, timeout: float = 10) -> Any:
        while True:
            item = self._items.get(timeout=timeout)
            if not item.HasField("healthPing"):
                return item

    def assert_no_item(self, timeout: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._items.get(timeout=left)
            except queue.Empty:
                return
            if not item.HasField("healthPing"):
                raise AssertionError(f"unexpected work item: {item}")

    def close(self) -> None:
        self._stream.cancel()
        self._thread.join(timeout=5)


def error_info_reason(error: grpc.RpcError) -> str | None:
    """The ``google.rpc.ErrorInfo`` reason a refused Dapr API call carries (daprd's error code)."""
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return None


# -- hand-written protocol messages, for a RawWorker ------------------------------------------


def string_value(text: str) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=text)


def schedule_task(action_id: int, name: str, data: str | None = None) -> pb.WorkflowAction:
    return pb.WorkflowAction(
        id=action_id,
        scheduleTask=pb.ScheduleTaskAction(
            name=name,
            input=string_value(data) if data is not None else None,
            taskExecutionId=f"exec-{action_id}",
        ),
    )


def start_raw(stub: stubs.TaskHubSidecarServiceStub, instance_id: str, name: str = "raw_wf"):
    """StartInstance on a thread, as the tests that use it were written when a start waited for
    the first turn; it now returns once the instance is on disk."""
    return in_thread(
        lambda: stub.StartInstance(
            pb.CreateInstanceRequest(instanceId=instance_id, name=name, input=string_value('"in"')),
            timeout=WAIT,
        )
    )


# -- subprocesses (CLI and crash tests) -----------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAPR_")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


SIDECAR_COMMAND = (sys.executable, "-m", "sidecar", "--metrics-port", "off")


def spawn_sidecar(
    port: int,
    db: Path,
    *args: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m sidecar`` as a child. Its output goes to pipes for a short-lived process
    the test reads to the end, or to ``log`` for a long-lived one: a pipe nobody reads fills
    up and would stall the sidecar on its next log line."""
    out: Any = subprocess.PIPE if log is None else open(log, "ab")  # noqa: SIM115
    try:
        return subprocess.Popen(
            # No metrics endpoint unless a test asks: daprd's default port 9090 is shared.
            [*SIDECAR_COMMAND, "--grpc-port", str(port), "--db", str(db), *args],
            cwd=REPO_ROOT,
            env=env or subprocess_env(),
            stdout=out,
            stderr=out if log is None else subprocess.STDOUT,
        )
    finally:
        if log is not None:
            out.close()


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20
) -> None:
    """Wait until a sidecar answers Hello on ``port``; fail at once if ``proc`` exited."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        hello = stubs.TaskHubSidecarServiceStub(ch)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(
                    f"sidecar exited with {proc.returncode}: {err.decode(errors='replace')}"
                )
            try:
                hello.Hello(empty_pb2.Empty(), timeout=1)
                return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return  # listening, and enforcing a token
                time.sleep(0.05)
    raise AssertionError(f"sidecar on port {port} did not answer within {timeout}s")


def _limit_memory(pid: int) -> None:
    """Cap a child's address space: a runaway worker must fail, not swap the machine.

    Set from outside with prlimit rather than in a ``preexec_fn``: running Python between
    fork and exec in this process, which has gRPC threads, can leave the child with a broken
    gRPC poller (``epoll_wait error: Bad file descriptor``), a worker that never starts.
    """
    import resource

    limit = 4 * 1024**3
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


def spawn_worker(port: int, **env: str) -> subprocess.Popen[bytes]:
    """Start ``sidecar.tests.worker_app`` against ``port``; returns once its stream is open."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.tests.worker_app"],
        cwd=REPO_ROOT,
        env=subprocess_env(DAPR_GRPC_PORT=str(port), DAPR_RUNTIME_HOST="127.0.0.1", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    _limit_memory(proc.pid)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the app prints one line once WorkflowRuntime.start returned
    if b"worker ready" not in line:
        proc.kill()
        raise AssertionError(f"worker did not start: {line!r}")
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it lingers; never leaves a child behind."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
