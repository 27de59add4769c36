"""The Dapr metadata API's answer (GetMetadata; HTTP ``GET /v1.0/metadata``): the runtime
version, the state stores served, the extended metadata SetMetadata wrote, and the connected
workflow workers. Built once here and rendered by each edge: gRPC sends the message, HTTP its
JSON shape (``runtime_http.py``).

Extended metadata is bounded as a whole: daprd bounds each SetMetadata by its body limit only
(dapr/dapr pkg/api/universal/metadata.go keeps every key), so 25 values of 4 MB each are kept
and GetMetadata over gRPC can no longer send its answer. Here the keys and values together stay
within ``sidecar.limits.WORK_ITEM_LIMIT_BYTES``, so the answer always fits one message; a write
past that is refused (RESOURCE_EXHAUSTED, HTTP 413) and changes nothing.
"""

from __future__ import annotations

from dapr.proto import api_v1

from sidecar.dapr.state_store import StateStore
from sidecar.engine.interface import WorkflowEngine
from sidecar.errors import SidecarError
from sidecar.limits import WORK_ITEM_LIMIT_BYTES

RUNTIME_VERSION = "edge"  # daprd reports its semver; we are not a daprd build
STATE_CAPABILITIES = ("ETAG", "TRANSACTIONAL")
STATE_COMPONENT_TYPE = "state.sqlite"
# A map entry of GetMetadataResponse.extended_metadata: its tags and lengths.
_ENTRY_OVERHEAD = 16


class MetadataTooLarge(SidecarError):
    """Extended metadata past its bound (ours: daprd has none; see the module docstring)."""

    code = "RESOURCE_EXHAUSTED"
    http_status = 413
    error_code = "ERR_METADATA_TOO_LARGE"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = self.error_code


def set_extended_metadata(extended: dict[str, str], key: str, value: str) -> None:
    """SetMetadata: keep ``value`` under ``key`` (an empty key is ignored, as daprd does)."""
    if not key:
        return
    size = _entry_size(key, value) + sum(_entry_size(k, v) for k, v in extended.items() if k != key)
    if size > WORK_ITEM_LIMIT_BYTES:
        raise MetadataTooLarge(
            f"extended metadata would be {size:,} bytes, over the limit of "
            f"{WORK_ITEM_LIMIT_BYTES:,} bytes (what one GetMetadata answer can carry)"
        )
    extended[key] = value


def _entry_size(key: str, value: str) -> int:
    return len(key.encode()) + len(value.encode()) + _ENTRY_OVERHEAD


def runtime_metadata(
    engine: WorkflowEngine, state: StateStore, extended: dict[str, str]
) -> api_v1.GetMetadataResponse:
    """The sidecar's metadata (shared with the HTTP edge, which renders it as JSON)."""
    response = api_v1.GetMetadataResponse(
        runtime_version=RUNTIME_VERSION,
        extended_metadata=extended,
        registered_components=[
            api_v1.RegisteredComponents(
                name=name,
                type=STATE_COMPONENT_TYPE,
                version="v1",
                capabilities=list(STATE_CAPABILITIES),
            )
            for name in state.names
        ],
    )
    workers = connected_workers(engine)
    if workers is not None:
        response.workflows.connected_workers = workers
    return response


def connected_workers(engine: WorkflowEngine) -> int | None:
    """Open GetWorkItems streams (daprd: ``workflows.connectedWorkers``)."""
    count = engine.connected_workers
    return count if isinstance(count, int) else None
