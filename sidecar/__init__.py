"""An embedded, SQLite-backed sidecar that speaks Dapr's workflow protocol.

Start it in-process with ``Sidecar(db_path=..., grpc_port=...).start()`` or from the command
line with ``python -m sidecar --grpc-port 50001 --db var/workflows.db``. It never imports Django.
"""

from __future__ import annotations

from .server import Sidecar, SidecarStartError

__all__ = ["Sidecar", "SidecarStartError"]
