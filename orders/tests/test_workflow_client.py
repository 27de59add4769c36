"""Which workflow engine the app talks to: the embedded sidecar, or daprd under Dapr."""

from __future__ import annotations

from orders import workflow_client


def test_engine_address_defaults_to_the_embedded_sidecar(settings):
    settings.DAPR_GRPC_PORT = None
    settings.WORKFLOW_GRPC_HOST = "127.0.0.1"
    settings.WORKFLOW_GRPC_PORT = 50001

    assert workflow_client.engine_address() == "127.0.0.1:50001"


def test_engine_address_uses_daprd_under_dapr_run(settings):
    settings.DAPR_GRPC_PORT = "50010"
    settings.DAPR_RUNTIME_HOST = "127.0.0.1"

    assert workflow_client.engine_address() == "127.0.0.1:50010"


def test_engine_address_honours_dapr_runtime_host_on_kubernetes(settings):
    settings.DAPR_GRPC_PORT = "50001"
    settings.DAPR_RUNTIME_HOST = "orders-worker-daprd"

    assert workflow_client.engine_address() == "orders-worker-daprd:50001"
