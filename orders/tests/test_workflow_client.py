"""Which workflow engine the app talks to: the embedded sidecar, or daprd under Dapr."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from orders import workflow_client
from orders.exceptions import EngineUnavailable
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


def test_workflow_history_is_the_engines_record_of_the_instance(workflow_engine, cars):
    order = order_place(item_id=cars.pk, quantity=1)
    workflow_engine.wait_for_completion(order.id)

    history = workflow_client.workflow_history(order.id)

    assert history is not None
    kinds = [event.kind for event in history]
    assert kinds.count("EXECUTION_STARTED") == 1 and kinds[-1] == "EXECUTION_COMPLETED"
    started = next(event for event in history if event.kind == "EXECUTION_STARTED")
    assert started.name == "order_processing_workflow"
    scheduled = [event.name for event in history if event.kind == "TASK_SCHEDULED"]
    assert scheduled[:2] == ["notify_activity", "verify_inventory_activity"]
    assert scheduled[-1] == "notify_activity"
    # Every activity scheduled was completed, each completion naming its scheduling event.
    completed = {event.scheduled_id for event in history if event.kind == "TASK_COMPLETED"}
    assert completed == {event.event_id for event in history if event.kind == "TASK_SCHEDULED"}
    # Aware times in the order they happened, within the order's life.
    times = [event.at for event in history if event.kind != "WORKFLOW_STARTED"]
    assert all(t.tzinfo is not None for t in times)
    assert times == sorted(times)
    order.refresh_from_db()
    assert (
        order.created_at - timedelta(seconds=1)
        <= times[0]
        <= order.updated_at + timedelta(seconds=1)
    )


def test_workflow_history_of_an_unknown_instance_is_none(workflow_engine, db):
    assert workflow_client.workflow_history("no-such-order") is None


def test_workflow_history_with_the_engine_away_is_engine_unavailable(db):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    workflow_client.use_address(address)
    try:
        with pytest.raises(EngineUnavailable, match=f"workflow engine at {address} did not"):
            workflow_client.workflow_history("any-order")
    finally:
        workflow_client.use_address(None)
