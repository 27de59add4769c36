"""The one place that knows how to reach the workflow engine.

Addresses, the API token (read by the SDK from ``DAPR_API_TOKEN``), the ``WorkflowRuntime`` the
worker hosts and the ``DaprWorkflowClient`` the web process uses all come from here; the rest of
the app calls the small functions below and sees ``EngineUnavailable`` when the engine is away.

Which engine: under ``dapr run`` the Dapr CLI sets ``DAPR_GRPC_PORT`` and that daprd is the engine;
otherwise it is the embedded sidecar that ``manage.py runworker`` starts on
``WORKFLOW_GRPC_HOST:WORKFLOW_GRPC_PORT``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from django.conf import settings

from orders.exceptions import EngineUnavailable

if TYPE_CHECKING:
    from dapr.ext.workflow import DaprWorkflowClient, WorkflowRuntime, WorkflowState

    from sidecar import Sidecar

logger = logging.getLogger(__name__)

APPROVAL_EVENT = "manager_approval"

_lock = threading.Lock()
_address_override: str | None = None
_client: tuple[int, str, DaprWorkflowClient] | None = None


def uses_dapr() -> bool:
    """True when a Dapr sidecar (daprd, started by `dapr run`) is the engine."""
    return bool(settings.DAPR_GRPC_PORT)


def engine_address() -> str:
    if _address_override:
        return _address_override
    if uses_dapr():
        return f"{settings.DAPR_RUNTIME_HOST}:{settings.DAPR_GRPC_PORT}"
    return f"{settings.WORKFLOW_GRPC_HOST}:{settings.WORKFLOW_GRPC_PORT}"


def use_address(address: str | None) -> None:
    """Point this process at another engine (runworker with port 0, tests); None resets."""
    global _address_override, _client
    with _lock:
        _address_override = address
        old, _client = _client, None
    if old is not None:
        old[2].close()


def _split(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return host, port


def _logger_options() -> Any:
    from dapr.ext.workflow.logger import LoggerOptions

    # The SDK adds its own stream handler unless given one; ours goes through Django's LOGGING.
    return LoggerOptions(log_handler=logging.NullHandler())


def client() -> DaprWorkflowClient:
    """This process's client, created lazily: gunicorn forks workers after import, and a gRPC
    channel must not cross a fork."""
    global _client
    from dapr.ext.workflow import DaprWorkflowClient

    address = engine_address()
    with _lock:
        if _client is None or _client[0] != os.getpid() or _client[1] != address:
            host, port = _split(address)
            _client = (
                os.getpid(),
                address,
                DaprWorkflowClient(host=host, port=port, logger_options=_logger_options()),
            )
        return _client[2]


def workflow_state(instance_id: str) -> WorkflowState | None:
    try:
        return client().get_workflow_state(instance_id, fetch_payloads=False)
    except grpc.RpcError as error:
        raise EngineUnavailable(_describe(error)) from error


def workflow_schedule(*, instance_id: str, input: dict[str, Any]) -> None:
    """Start the order workflow under ``instance_id`` unless an instance with that id exists.

    Scheduling twice must be harmless, and an engine may *restart* a finished instance when asked
    to start one with the same id, so we look first and treat "already exists" as success.
    """
    from orders.workflow import order_processing_workflow

    if workflow_state(instance_id) is not None:
        return
    try:
        client().schedule_new_workflow(
            order_processing_workflow, input=input, instance_id=instance_id
        )
    except grpc.RpcError as error:
        if workflow_state(instance_id) is not None:
            return
        raise EngineUnavailable(_describe(error)) from error


def workflow_raise_approval(instance_id: str, *, approved: bool) -> None:
    try:
        client().raise_workflow_event(instance_id, APPROVAL_EVENT, data={"approval": approved})
    except grpc.RpcError as error:
        raise EngineUnavailable(_describe(error)) from error


def workflow_terminate(instance_id: str) -> None:
    """Terminate the instance; one the engine never heard of counts as terminated."""
    try:
        client().terminate_workflow(instance_id)
    except grpc.RpcError as error:
        details = error.details() or ""  # type: ignore[attr-defined]
        if "no such instance" in details or error.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return
        raise EngineUnavailable(_describe(error)) from error


def runtime_create(address: str | None = None, **options: Any) -> WorkflowRuntime:
    """A ``WorkflowRuntime`` with the order workflow and its activities registered (not started)."""
    from dapr.ext.workflow import WorkflowRuntime

    from orders import activities
    from orders.workflow import order_processing_workflow

    host, port = _split(address or engine_address())
    runtime = WorkflowRuntime(host=host, port=port, logger_options=_logger_options(), **options)
    runtime.register_workflow(_registrable(order_processing_workflow))
    for activity in activities.ALL:
        runtime.register_activity(_registrable(activity))
    return runtime


def _registrable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A fresh function object with fn's name and signature.

    The SDK marks a function as registered on the function object itself and refuses a second
    registration, so one process could host only one runtime in its lifetime (tests, quickstart
    after runworker). Registering a wrapper keeps the module-level functions unmarked.
    """

    @functools.wraps(fn)
    def registered(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return registered


def sidecar_start(*, db_path: Path | str, port: int, host: str | None = None) -> Sidecar:
    """Start the embedded sidecar in this process; returns once its port listens."""
    from sidecar import Sidecar

    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    sidecar = Sidecar(
        db_path=str(db_path), grpc_port=port, host=host or settings.WORKFLOW_GRPC_HOST
    )
    sidecar.start()
    return sidecar


def _describe(error: grpc.RpcError) -> str:
    code = getattr(error, "code", lambda: None)()
    details = getattr(error, "details", lambda: None)()
    name = code.name if code is not None else "UNKNOWN"
    return (
        f"workflow engine at {engine_address()} did not answer ({name}: {details or 'no details'})"
    )
