"""Which workflow engine the app talks to: the embedded sidecar, or daprd under Dapr."""

from __future__ import annotations

from orders import workflow_client
from orders.services.orders import order_place


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


def test_orders_run_as_the_quickstarts_order_processing_workflow(workflow_engine, cars):
    # The name Dapr's tools and HTTP API address the workflow by: the client schedules by it
    # and the worker registers the workflow under it.
    order = order_place(item_id=cars.pk, quantity=1)
    workflow_engine.wait_for_completion(order.id)
    state = workflow_client.workflow_state(order.id)
    assert state is not None
    assert state.name == "order_processing_workflow"
    assert state.runtime_status.name == "COMPLETED"
