"""The one place that knows how to reach the workflow engine.

Addresses, the API token (``settings.DAPR_API_TOKEN``, handed to the SDK here) and the
``DaprWorkflowClient`` the web process uses all come from here; the rest of the app calls the small functions below and
sees ``EngineUnavailable`` when the engine is away. The workflow is addressed by the name it is
registered under, so this module imports no workflow code.

Which engine: under ``dapr run`` the Dapr CLI sets ``DAPR_GRPC_PORT`` and that daprd is the engine;
otherwise it is the embedded sidecar that ``manage.py runworker`` starts on
``WORKFLOW_GRPC_HOST:WORKFLOW_GRPC_PORT``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from django.conf import settings

from orders.exceptions import EngineUnavailable
from orders.observability import with_trace_context

if TYPE_CHECKING:
    from dapr.ext.workflow import DaprWorkflowClient, WorkflowState

# The name the worker registers the order workflow under (orders.workflows.runtime) and the
# Dapr Workflow quickstart's name for it; Dapr's HTTP API addresses it by this name too.
ORDER_WORKFLOW = "order_processing_workflow"

_lock = threading.Lock()
_token_lock = threading.Lock()
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


def sdk_options(address: str | None = None) -> dict[str, Any]:
    """What the SDK's client and ``WorkflowRuntime`` are built with: the engine's host and port
    (``address``, default this process's engine) and our logging. Build them with ``sdk_build``,
    which also hands them the API token."""
    from dapr.ext.workflow.logger import LoggerOptions

    host, _, port = (address or engine_address()).rpartition(":")
    # The SDK adds its own stream handler unless given one; ours goes through Django's LOGGING.
    return {
        "host": host,
        "port": port,
        "logger_options": LoggerOptions(log_handler=logging.NullHandler()),
    }


T = TypeVar("T")


def sdk_build(factory: Callable[..., T], address: str | None = None, **options: Any) -> T:
    """Build an SDK client or ``WorkflowRuntime`` for ``address`` that sends our API token.

    The SDK takes the token from its own settings object while it builds one, not from an
    argument (and otherwise from ``DAPR_API_TOKEN`` in the environment). Django's settings hold
    ours (generated per installation for the embedded sidecar), so it is set there for the
    build only, under a lock, and the SDK's environment lookup is restored afterwards.
    """
    from dapr.conf import settings as dapr_settings

    with _token_lock:
        dapr_settings.DAPR_API_TOKEN = settings.DAPR_API_TOKEN
        try:
            return factory(**sdk_options(address), **options)
        finally:
            del dapr_settings.DAPR_API_TOKEN


def client() -> DaprWorkflowClient:
    """This process's client, created lazily: gunicorn forks workers after import, and a gRPC
    channel must not cross a fork. When the process is traced, every call carries the current
    span's trace context (so a workflow started in a request is part of that request's trace)."""
    global _client
    from dapr.ext.workflow import DaprWorkflowClient

    address = engine_address()
    with _lock:
        if _client is None or _client[0] != os.getpid() or _client[1] != address:
            built = with_trace_context(sdk_build(DaprWorkflowClient, address))
            _client = (os.getpid(), address, built)
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
    if workflow_state(instance_id) is not None:
        return
    try:
        client().schedule_new_workflow(ORDER_WORKFLOW, input=input, instance_id=instance_id)
    except grpc.RpcError as error:
        if workflow_state(instance_id) is not None:
            return
        raise EngineUnavailable(_describe(error)) from error


def workflow_raise_event(instance_id: str, event_name: str, *, data: dict[str, Any]) -> None:
    try:
        client().raise_workflow_event(instance_id, event_name, data=data)
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


@dataclass(frozen=True)
class HistoryEvent:
    """One event of a workflow instance's history as the engine recorded it.

    ``kind`` is the SDK's name for the event type (``TASK_SCHEDULED``, ``TIMER_FIRED``, ...);
    ``name`` is the activity, event or workflow it is about, where the event carries one;
    ``scheduled_id`` pairs a completion with its ``TASK_SCHEDULED`` (whose ``event_id`` it is).
    """

    at: datetime
    kind: str
    name: str | None
    event_id: int
    scheduled_id: int | None
    failure: str | None


def workflow_history(instance_id: str) -> list[HistoryEvent] | None:
    """The instance's history, oldest first; None when the engine has no such instance.

    Read with the SDK's ``get_workflow_history``, the durabletask ``GetInstanceHistory`` RPC,
    which daprd serves from Dapr 1.17 and the embedded sidecar serves too. An older daprd answers
    UNIMPLEMENTED; that is reported as ``EngineUnavailable`` with what it needs.
    """
    try:
        events = client().get_workflow_history(instance_id)
    except NotImplementedError as error:
        raise EngineUnavailable(
            f"workflow engine at {engine_address()} cannot read workflow history "
            "(Dapr 1.17 or newer can)"
        ) from error
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return None
        raise EngineUnavailable(_describe(error)) from error
    return [
        HistoryEvent(
            # The SDK gives naive UTC datetimes (its WorkflowState convention).
            at=event.timestamp.replace(tzinfo=UTC),
            kind=event.event_type.name,
            name=event.name,
            event_id=event.event_id,
            scheduled_id=event.task_scheduled_id,
            failure=event.failure_details.message if event.failure_details else None,
        )
        for event in events
    ]


def _describe(error: grpc.RpcError) -> str:
    code = getattr(error, "code", lambda: None)()
    details = getattr(error, "details", lambda: None)()
    name = code.name if code is not None else "UNKNOWN"
    return (
        f"workflow engine at {engine_address()} did not answer ({name}: {details or 'no details'})"
    )
