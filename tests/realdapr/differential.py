"""The differential conformance suite's machinery: run one scenario on daprd and on the embedded
sidecar, observe what the program sees, normalise what legitimately differs, compare the rest.

A scenario is a function ``(Program) -> dict`` registered with ``@scenario``. It is called once
per engine, on its own thread, with a ``Program`` bound to that engine: a worker it may stop and
replace (``p.worker(register)``), a ``DaprWorkflowClient``, the engine's gRPC and HTTP ports,
and a log the workflow code appends to (activities run, events seen). Whatever it returns is the
observation: statuses, outputs, custom statuses, failure details, the gRPC codes and messages of
client calls, the order in the log. Both observations, normalised (``normalise``), must be
equal, or the scenario is listed in ``DELIBERATE`` with its reason and each engine's pinned
value for the keys that differ, so a kept difference cannot drift (``comparison.py``).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from dapr.ext.workflow import DaprWorkflowClient, WorkflowRuntime, WorkflowState
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar import Sidecar
from sidecar.tests.harness import new_client, new_runtime

from .processes import Daprd, free_port

WAIT = 60  # seconds for any one wait on daprd or the sidecar (daprd's timers add ~1 s)


@dataclass
class Engine:
    """One engine as a program sees it: where its gRPC and HTTP APIs listen."""

    kind: str  # "daprd" or "sidecar"
    grpc_port: int
    http_port: int

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@contextmanager
def sidecar_engine(directory: Path, api_token: str | None = None) -> Iterator[Engine]:
    """The embedded sidecar in-process, durable SQLite file, gRPC and HTTP on free ports."""
    directory.mkdir(parents=True, exist_ok=True)
    sidecar = Sidecar(
        db_path=str(directory / "workflows.db"),
        grpc_port=0,
        http_port=free_port(),
        api_token=api_token or "",
    )
    sidecar.start()
    try:
        assert sidecar.http_port is not None
        yield Engine("sidecar", int(sidecar.grpc_address.rsplit(":", 1)[1]), sidecar.http_port)
    finally:
        sidecar.stop()


def daprd_engine(daprd: Daprd) -> Engine:
    return Engine("daprd", daprd.grpc_port, daprd.http_port)


class Program:
    """A workflow program on one engine: workers (one at a time), a client, a shared log."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.log: list[Any] = []
        self._lock = threading.Lock()
        self._runtime: WorkflowRuntime | None = None
        self._client: DaprWorkflowClient | None = None
        self._channels: list[grpc.Channel] = []

    @property
    def kind(self) -> str:
        return self.engine.kind

    def record(self, item: Any) -> None:
        with self._lock:
            self.log.append(item)

    def worker(self, register: Callable[[WorkflowRuntime], None]) -> WorkflowRuntime:
        """Stop the current worker (if any) and start a new one with ``register``'s code."""
        self.stop_worker()
        runtime = new_runtime(self.engine.grpc_address)
        register(runtime)
        runtime.start()
        self._runtime = runtime
        self.wait_for(self._worker_ready, timeout=30)
        return runtime

    def _worker_ready(self) -> bool:
        """The engine has the worker: daprd registers the workflow actor types only once the
        worker's stream is open, and refuses calls on those actors until then ("actor type
        ... not registered"), which a call right after a worker restart would otherwise hit."""
        with urllib.request.urlopen(f"{self.engine.http_base}/v1.0/metadata", timeout=5) as r:
            metadata = json.loads(r.read())
        if metadata.get("workflows", {}).get("connectedWorkers", 0) < 1:
            return False
        if self.kind == "sidecar":
            return True
        return any(a["type"].endswith(".workflow") for a in metadata.get("actors", []))

    def stop_worker(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.shutdown()

    @property
    def client(self) -> DaprWorkflowClient:
        if self._client is None:
            self._client = new_client(self.engine.grpc_address)
        return self._client

    def channel(self) -> grpc.Channel:
        """A raw gRPC channel to the engine, for calls the SDK does not make; closed with the
        program."""
        channel = grpc.insecure_channel(self.engine.grpc_address)
        self._channels.append(channel)
        return channel

    def close(self) -> None:
        try:
            self.stop_worker()
        finally:
            if self._client is not None:
                self._client.close()
            for channel in self._channels:
                channel.close()

    # -- observing ------------------------------------------------------------------------------

    def wait(self, instance_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """The instance's final state, or its state when ``timeout`` ran out."""
        try:
            state = self.client.wait_for_workflow_completion(
                instance_id, timeout_in_seconds=int(timeout)
            )
        except TimeoutError:
            return {"timed_out": True, **self.state(instance_id)}
        return view(state)

    def state(self, instance_id: str) -> dict[str, Any]:
        for _ in range(TRANSIENT_RETRIES):
            seen = attempt(lambda: view(self.client.get_workflow_state(instance_id)))
            if not _transient(seen.get("details")):
                break
            time.sleep(0.1)
        return seen  # type: ignore[no-any-return]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except grpc.RpcError as exc:
                if not _transient(exc.details()):  # type: ignore[attr-defined]
                    raise
            time.sleep(0.05)
        return predicate()

    def wait_status(self, instance_id: str, *statuses: str, timeout: float = WAIT) -> str:
        """Poll until the instance shows one of ``statuses``; returns the status last seen."""
        seen = ""

        def reached() -> bool:
            nonlocal seen
            state = self.client.get_workflow_state(instance_id, fetch_payloads=False)
            seen = state.runtime_status.name if state is not None else "NONE"
            return seen in statuses

        self.wait_for(reached, timeout)
        return seen

    def wait_for_history(self, instance_id: str, kind: str, count: int = 1) -> bool:
        """Wait until the committed history holds ``count`` events of ``kind``: e.g. the
        timerCreated of an event wait, so an event raised next arrives in a turn of its own
        on both engines (raised earlier, it may share the previous turn on one of them)."""
        return self.wait_for(
            lambda: (
                sum(
                    e.event_type.value == kind
                    for e in self.client.get_workflow_history(instance_id)
                )
                >= count
            )
        )

    def stalls(self, instance_id: str) -> list[dict[str, Any]]:
        """The executionStalled events of the history: reason and description (the SDK's
        history view leaves them out, so this reads the raw protocol)."""
        stub = stubs.TaskHubSidecarServiceStub(self.channel())
        response = stub.GetInstanceHistory(pb.GetInstanceHistoryRequest(instanceId=instance_id))
        return [
            {
                "reason": pb.StalledReason.Name(e.executionStalled.reason),
                "description": e.executionStalled.description,
            }
            for e in response.events
            if e.HasField("executionStalled")
        ]

    def history(self, instance_id: str) -> list[str]:
        """The history's event types without workflowStarted: where one turn ends and the next
        begins depends on when events arrive, on either engine; what happened, and in which
        order, does not. Read again on daprd's transient read error, as ``state`` does."""
        for attempt_no in range(TRANSIENT_RETRIES):
            try:
                events = self.client.get_workflow_history(instance_id)
                break
            except grpc.RpcError as exc:
                last = attempt_no == TRANSIENT_RETRIES - 1
                if last or not _transient(exc.details()):  # type: ignore[attr-defined]
                    raise
                time.sleep(0.1)
        return [e.event_type.value for e in events if e.event_type.value != "workflowStarted"]


# daprd 1.18.2 can answer a read that races its own save of the instance (Redis, which it warns
# is no transactional actor store) with UNKNOWN "... declared in metadata ... but missing from
# state store (transient store read failure or partial save?)". A program reads again; so do
# the suite's reads, rather than compare daprd's race.
TRANSIENT_RETRIES = 5


def _transient(details: object) -> bool:
    return isinstance(details, str) and "transient store read failure" in details


def view(state: WorkflowState | None) -> dict[str, Any]:
    """What a program reads from a workflow state, timestamps left out."""
    if state is None:
        return {"state": None}
    failure = state.failure_details
    return {
        "status": state.runtime_status.name,
        "name": state.name,
        "input": state.serialized_input,
        "output": state.serialized_output,
        "custom_status": state.serialized_custom_status,
        "failure": None
        if failure is None
        else {
            "type": failure.error_type,
            "message": failure.message,
            "stack_trace": failure.stack_trace,
        },
    }


def attempt(call: Callable[[], Any]) -> Any:
    """A client call's result, or the error a program would catch: type, gRPC code, message."""
    try:
        return call()
    except grpc.RpcError as exc:
        return {
            "error": type(exc).__name__,
            "code": exc.code().name,  # type: ignore[attr-defined]
            "details": exc.details(),  # type: ignore[attr-defined]
        }
    except Exception as exc:  # what the SDK wraps, e.g. DaprInternalError, TimeoutError
        return {"error": type(exc).__name__, "details": str(exc)}


# -- scenarios and their outcomes -----------------------------------------------------------------

Scenario = Callable[[Program], dict[str, Any]]


@dataclass
class Registered:
    name: str
    run: Scenario
    feature: str
    api_token: str | None  # both engines then require it (DAPR_API_TOKEN)


SCENARIOS: dict[str, Registered] = {}


def scenario(feature: str, *, api_token: str | None = None) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        name = fn.__name__
        assert name not in SCENARIOS, name
        SCENARIOS[name] = Registered(name, fn, feature, api_token)
        return fn

    return register


def run_both(
    scenario_fn: Scenario, daprd: Engine, sidecar: Engine
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the scenario on both engines at once, each with its own Program on its own thread."""

    def run(engine: Engine) -> dict[str, Any]:
        program = Program(engine)
        try:
            return scenario_fn(program)
        finally:
            program.close()

    with ThreadPoolExecutor(2, thread_name_prefix="differential") as pool:
        on_daprd = pool.submit(run, daprd)
        on_sidecar = pool.submit(run, sidecar)
        return on_daprd.result(), on_sidecar.result()
