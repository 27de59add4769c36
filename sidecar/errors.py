"""The sidecar's one exception hierarchy. Edges (gRPC, HTTP) map ``code`` to their status codes."""

from __future__ import annotations


class SidecarError(Exception):
    """Base class. ``code`` is a gRPC status name (``grpc.StatusCode[code]``)."""

    code = "UNKNOWN"


class InvalidArgument(SidecarError):
    code = "INVALID_ARGUMENT"


class NotFound(SidecarError):
    code = "NOT_FOUND"


class InstanceNotFound(SidecarError):
    """daprd reports an unknown instance for raise/terminate/purge as a plain error (UNKNOWN)
    whose text the SDK looks for: 'no such instance exists', word for word as daprd 1.18
    words it (without the instance id; tests/realdapr compares the two)."""

    code = "UNKNOWN"

    def __init__(self, instance_id: str, prefix: str = "") -> None:
        self.instance_id = instance_id
        super().__init__(f"{prefix}no such instance exists")


class AlreadyExists(SidecarError):
    code = "ALREADY_EXISTS"


class ActiveInstanceExists(AlreadyExists):
    """A start over an instance that is still active. ``detail`` is the engine's reason; the
    message wraps it as daprd's workflow protocol does (its actor call's error), and daprd's
    runtime API wraps ``detail`` its own way (sidecar/dapr/workflow_management.py)."""

    def __init__(self, instance_id: str) -> None:
        self.detail = f"an active workflow with ID '{instance_id}' already exists"
        super().__init__(
            f"failed to create workflow instance: rpc error: code = AlreadyExists desc = "
            f"{self.detail}"
        )


class FailedPrecondition(SidecarError):
    code = "FAILED_PRECONDITION"


class NotCompleted(SidecarError):
    """Purge of an instance that is not terminal (daprd: plain error, text kept)."""

    code = "UNKNOWN"


class Stalled(SidecarError):
    code = "UNKNOWN"


class Unauthenticated(SidecarError):
    code = "UNAUTHENTICATED"


class PayloadTooLarge(SidecarError):
    """A payload that would make an instance's next work item larger than a worker can be sent
    (``sidecar.limits``); refused before anything changed."""

    code = "RESOURCE_EXHAUSTED"
