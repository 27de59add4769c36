"""Starting the embedded sidecar (the ``sidecar`` package) inside a Django process.

``manage.py runworker`` hosts it when no Dapr sidecar is the engine, ``manage.py quickstart``
always; the web process never starts one, it reaches the engine through
``orders.workflow_client``.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from sidecar.server import Sidecar


def sidecar_start(
    *,
    db_path: Path | str,
    port: int,
    host: str | None = None,
    metrics: bool = True,
) -> Sidecar:
    """Start the embedded sidecar in this process; returns once its port listens.

    It requires this installation's API token (``settings.DAPR_API_TOKEN``) on every call, so
    only the app's own processes can start workflows or raise a manager's decision. It traces
    as ``settings.DAPR_CONFIG`` says (the Configuration daprd is given under ``dapr run``) and
    serves daprd's workflow metrics on ``settings.WORKFLOW_METRICS_PORT`` unless ``metrics``
    is false.
    """
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    sidecar = Sidecar(
        db_path=str(db_path),
        grpc_port=port,
        host=host or settings.WORKFLOW_GRPC_HOST,
        api_token=settings.DAPR_API_TOKEN,
        config=settings.DAPR_CONFIG or None,
        app_id=settings.WORKFLOW_APP_ID,
        metrics_port=settings.WORKFLOW_METRICS_PORT if metrics else None,
    )
    sidecar.start()
    return sidecar
