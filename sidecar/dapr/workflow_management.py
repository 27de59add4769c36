"""Dapr's workflow management API (Start/Get/Terminate/Pause/Resume/RaiseEvent/Purge), shared by
the runtime API's gRPC edge (``runtime_grpc.py``, Alpha1 and Beta1 methods) and its HTTP edge
(``runtime_http.py``).

It mirrors daprd's ``pkg/api/universal/workflow.go``: the same validation, the same mapping
onto the engine and the same error codes and message texts, so a client cannot tell the
difference. Notable daprd behaviour kept on purpose:

* Start does not wait for the instance to start (daprd schedules it through the backend
  client); an empty instance ID gets a random dashed UUID; only ``dapr.workflow.start_time``
  (RFC 3339) is read from the options.
* Terminate and purge are always recursive.
* An unknown instance is NOT_FOUND for terminate and purge, but an engine error
  (``ERR_RAISE_EVENT_WORKFLOW`` and friends, 500/INTERNAL) for raise, pause and resume; Get
  reports it as "no properties" and each edge decides (gRPC: OK with only the ID, HTTP: 404).
* Engine errors on start (an active instance with the same ID, say) are ``ERR_START_WORKFLOW``
  with 500/INTERNAL, as in daprd; the engine's own message is kept in the text. A payload that
  would make the instance's next work item too large (engine/payload.py) keeps the operation's
  error code but is RESOURCE_EXHAUSTED, HTTP 413: daprd accepts it and stalls the instance.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from datetime import datetime

from dapr.proto import api_v1

from sidecar.engine import status
from sidecar.engine.interface import WorkflowEngine
from sidecar.errors import (
    ActiveInstanceExists,
    InstanceNotFound,
    NotFound,
    PayloadTooLarge,
    SidecarError,
)

MAX_INSTANCE_ID_BYTES = 64
START_TIME_OPTION = "dapr.workflow.start_time"

# daprd's statusMap has no STALLED: the Dapr workflow API reports it as "UNKNOWN".
_STATUS_NAMES = {s: n for s, n in status.STATUS_NAMES.items() if s != status.STALLED}


class DaprApiError(SidecarError):
    """A Dapr API failure as daprd reports it: ``code`` (gRPC status name), ``http_status``,
    ``error_code`` (daprd's errorCode), ``message``, ``reason`` (ErrorInfo). ``StateError``
    carries the same attributes; the edges read only these."""

    def __init__(
        self, code: str, http_status: int, error_code: str, message: str, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.error_code = error_code
        self.message = message
        self.reason = reason or error_code


def _bad_request(error_code: str, message: str) -> DaprApiError:
    return DaprApiError("INVALID_ARGUMENT", 400, error_code, message)


def _internal(error_code: str, message: str) -> DaprApiError:
    return DaprApiError("INTERNAL", 500, error_code, message)


def _engine_error(exc: SidecarError, error_code: str, context: str) -> DaprApiError:
    """An engine error as daprd reports it (500/INTERNAL), but a payload too large as what it
    is: RESOURCE_EXHAUSTED, HTTP 413 (daprd takes it and stalls the instance; see
    engine/payload.py)."""
    if isinstance(exc, PayloadTooLarge):
        return DaprApiError("RESOURCE_EXHAUSTED", 413, error_code, f"{context}: {exc}")
    return _internal(error_code, f"{context}: {exc}")


def _instance_not_found(instance_id: str) -> DaprApiError:
    return DaprApiError(
        "NOT_FOUND",
        404,
        "ERR_INSTANCE_ID_NOT_FOUND",
        f"unable to find workflow with the provided instance ID: {instance_id}",
    )


def as_api_error(exc: SidecarError) -> SidecarError:
    """An engine error this module did not shape (it shapes all it expects) as a 500."""
    if isinstance(exc, DaprApiError) or hasattr(exc, "error_code"):
        return exc
    return DaprApiError(exc.code, 500, "ERR_INTERNAL", str(exc))


def _validate_instance_id(instance_id: str, *, is_create: bool) -> None:
    if not instance_id:
        raise _bad_request("ERR_INSTANCE_ID_PROVIDED_MISSING", "no instance ID was provided")
    if not is_create:
        return
    # Go's len() counts bytes; daprd's check is unicode.IsLetter/IsDigit, '_' and '-'.
    if len(instance_id.encode()) > MAX_INSTANCE_ID_BYTES:
        raise _bad_request(
            "ERR_INSTANCE_ID_TOO_LONG",
            f"workflow instance ID exceeds the max length of {MAX_INSTANCE_ID_BYTES} characters",
        )
    for c in instance_id:
        if not (c.isalpha() or unicodedata.category(c) == "Nd" or c in "_-"):
            raise _bad_request(
                "ERR_INSTANCE_ID_INVALID",
                f"workflow instance ID '{instance_id}' is invalid:"
                " only alphanumeric and underscore characters are allowed",
            )


def _text(data: bytes | None, what: str) -> str | None:
    """Raw request bytes as the engine's JSON text; empty means absent."""
    if not data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_request("ERR_MALFORMED_REQUEST", f"{what} is not valid UTF-8 text") from None


def _is_not_found(exc: SidecarError) -> bool:
    return isinstance(exc, InstanceNotFound | NotFound)


async def workflow_start(
    engine: WorkflowEngine,
    *,
    instance_id: str,
    name: str,
    input: bytes | None,
    options: Mapping[str, str] | None = None,
) -> str:
    instance_id = instance_id or str(uuid.uuid4())
    _validate_instance_id(instance_id, is_create=True)
    if not name:
        raise _bad_request("ERR_WORKFLOW_NAME_MISSING", "workflow name is not configured")
    scheduled_start = None
    raw_start = (options or {}).get(START_TIME_OPTION)
    if raw_start is not None:
        scheduled_start = _parse_rfc3339(raw_start)
        if scheduled_start is None:
            raise _internal(
                "ERR_START_WORKFLOW",
                f"error starting workflow '{name}': start times must be in RFC3339 format"
                ' (e.g. "2009-11-10T23:00:00Z")',
            )
    text = _text(input, "workflow input")
    try:
        started = await engine.start_instance(
            instance_id=instance_id,
            name=name,
            input=text,
            scheduled_start=scheduled_start,
        )
    except SidecarError as exc:
        context = f"error starting workflow '{name}': unable to start workflow"
        if isinstance(exc, ActiveInstanceExists):  # daprd's runtime API words it so
            raise _internal(
                "ERR_START_WORKFLOW",
                f"{context}: failed to start workflow: rpc error: code = AlreadyExists"
                f" desc = {exc.detail}",
            ) from exc
        raise _engine_error(exc, "ERR_START_WORKFLOW", context) from exc
    return started


async def workflow_get(
    engine: WorkflowEngine, *, instance_id: str
) -> api_v1.GetWorkflowResponse | None:
    """The instance as daprd's GetWorkflowResponse, or ``None`` for an unknown instance."""
    _validate_instance_id(instance_id, is_create=False)
    info = engine.get_instance(instance_id)
    if info is None:
        return None
    response = api_v1.GetWorkflowResponse(
        instance_id=instance_id,
        workflow_name=info.name,
        runtime_status=_STATUS_NAMES.get(info.status, "UNKNOWN"),
    )
    response.created_at.FromDatetime(info.created_at)
    response.last_updated_at.FromDatetime(info.updated_at)
    props = response.properties
    if info.custom_status is not None:
        props["dapr.workflow.custom_status"] = info.custom_status
    if info.input is not None:
        props["dapr.workflow.input"] = info.input
    if info.output is not None and info.failure is None:
        props["dapr.workflow.output"] = info.output
    if info.failure is not None:
        props["dapr.workflow.failure.error_type"] = info.failure.errorType
        props["dapr.workflow.failure.error_message"] = info.failure.errorMessage
        if info.failure.HasField("stackTrace"):
            props["dapr.workflow.failure.stack_trace"] = info.failure.stackTrace.value
    return response


async def workflow_terminate(engine: WorkflowEngine, *, instance_id: str) -> None:
    _validate_instance_id(instance_id, is_create=False)
    try:
        await engine.terminate(instance_id, recursive=True, wait=False)
    except SidecarError as exc:
        if _is_not_found(exc):
            raise _instance_not_found(instance_id) from exc
        raise _internal(
            "ERR_TERMINATE_WORKFLOW",
            f"error terminating workflow '{instance_id}':"
            f" failed to terminate workflow {instance_id}: {exc}",
        ) from exc


async def workflow_raise_event(
    engine: WorkflowEngine, *, instance_id: str, event_name: str, event_data: bytes | None
) -> None:
    _validate_instance_id(instance_id, is_create=False)
    if not event_name:
        raise _bad_request("ERR_WORKFLOW_EVENT_NAME_MISSING", "missing workflow event name")
    text = _text(event_data, "event data")
    try:
        await engine.raise_event(instance_id, event_name, text)
    except SidecarError as exc:
        raise _engine_error(
            exc,
            "ERR_RAISE_EVENT_WORKFLOW",
            f"error raising event on workflow '{instance_id}':"
            f" failed to raise event {event_name} on workflow {instance_id}:"
            " failed to raise event",
        ) from exc


async def workflow_pause(engine: WorkflowEngine, *, instance_id: str) -> None:
    _validate_instance_id(instance_id, is_create=False)
    try:
        await engine.suspend(instance_id, reason=None, wait=False)
    except SidecarError as exc:
        raise _internal(
            "ERR_PAUSE_WORKFLOW",
            f"error pausing workflow {instance_id}: failed to pause workflow {instance_id}:"
            f" failed to suspend workflow: {exc}",
        ) from exc


async def workflow_resume(engine: WorkflowEngine, *, instance_id: str) -> None:
    _validate_instance_id(instance_id, is_create=False)
    try:
        await engine.resume(instance_id, reason=None, wait=False)
    except SidecarError as exc:
        raise _internal(
            "ERR_RESUME_WORKFLOW",
            f"error resuming workflow {instance_id}:"
            f" failed to resume workflow {instance_id}: failed to resume workflow: {exc}",
        ) from exc


async def workflow_purge(engine: WorkflowEngine, *, instance_id: str) -> None:
    _validate_instance_id(instance_id, is_create=False)
    try:
        deleted = await engine.purge(instance_id, recursive=True)
    except SidecarError as exc:
        if _is_not_found(exc):
            raise _instance_not_found(instance_id) from exc
        raise _internal(
            "ERR_PURGE_WORKFLOW",
            f"error purging workflow {instance_id}: failed to Purge workflow {instance_id}: {exc}",
        ) from exc
    if deleted == 0:
        raise _instance_not_found(instance_id)


def _parse_rfc3339(text: str) -> datetime | None:
    # RFC 3339 needs the 'T' separator and an offset; fromisoformat accepts more, so check both.
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None or "T" not in text.upper():
        return None
    return value
