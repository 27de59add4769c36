"""The Dapr metadata API's answer (GetMetadata; HTTP ``GET /v1.0/metadata``): the runtime
version, the state stores served, the extended metadata SetMetadata wrote, and the connected
workflow workers. Built once here and rendered by each edge: gRPC sends the message, HTTP its
JSON shape (``runtime_http.py``).
"""

from __future__ import annotations

from dapr.proto import api_v1

from sidecar.dapr.state_store import StateStore
from sidecar.engine.interface import WorkflowEngine

RUNTIME_VERSION = "edge"  # daprd reports its semver; we are not a daprd build
STATE_CAPABILITIES = ("ETAG", "TRANSACTIONAL")
STATE_COMPONENT_TYPE = "state.sqlite"


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
