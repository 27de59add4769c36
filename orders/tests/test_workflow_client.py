"""Which workflow engine the app talks to: the embedded sidecar, or daprd under Dapr."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import grpc
import pytest
from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs
from dapr.ext.workflow._durabletask.internal import protos as pb
from django.conf import settings

from orders import workflow_client
from orders.exceptions import EngineUnavailable
from orders.models import Order, OrderStatus
from orders.services.orders import order_place, order_workflow_input
from orders.tests.conftest import stock, timeline, wait_until
from orders.workflows.order_processing import APPROVAL_EVENT
from orders.workflows.runtime import runtime_create
from sidecar.server import Sidecar


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


# --- against a real embedded sidecar ---------------------------------------------------------


@pytest.fixture
def idle_engine(tmp_path, transactional_db):
    """An embedded sidecar that requires this installation's token, with no worker connected."""
    sidecar = Sidecar(
        db_path=str(tmp_path / "workflows.db"), grpc_port=0, api_token=settings.DAPR_API_TOKEN
    )
    sidecar.start()
    workflow_client.use_address(sidecar.grpc_address)
    try:
        yield sidecar
    finally:
        workflow_client.use_address(None)
        sidecar.stop()


def test_engine_down_gives_engine_unavailable(idle_engine, cars):
    order = Order.objects.create(item=cars, quantity=1, total_cost=Decimal("5000"))
    address = idle_engine.grpc_address
    idle_engine.stop()  # its port is gone
    calls = {
        "state": lambda: workflow_client.workflow_state(order.id),
        "schedule": lambda: workflow_client.workflow_schedule(
            instance_id=order.id, input=order_workflow_input(order)
        ),
        "raise": lambda: workflow_client.workflow_raise_event(
            order.id, APPROVAL_EVENT, data={"approval": True}
        ),
        "terminate": lambda: workflow_client.workflow_terminate(order.id),
    }

    for name, call in calls.items():
        with pytest.raises(EngineUnavailable) as refused:
            call()
        assert str(refused.value).startswith(
            f"workflow engine at {address} did not answer (UNAVAILABLE: "
        ), name


def test_terminating_an_unknown_instance_succeeds(workflow_engine):
    # The engine answers "no such instance exists"; for the app that instance is as good as
    # terminated (an order cancelled before its workflow was ever scheduled).
    assert workflow_client.workflow_terminate("never-scheduled") is None
    assert workflow_client.workflow_state("never-scheduled") is None


def test_scheduling_the_same_order_twice_is_harmless(workflow_engine, cars):
    # Written while the engine was down; then the request and runworker's sweep (say) both
    # schedule it at once, and the sweep once more after it finished.
    order = Order.objects.create(item=cars, quantity=1, total_cost=Decimal("5000"))
    workflow_input = order_workflow_input(order)
    both_ready = threading.Barrier(2)

    def schedule() -> None:
        both_ready.wait()
        workflow_client.workflow_schedule(instance_id=order.id, input=workflow_input)

    with ThreadPoolExecutor(2) as pool:
        outcomes = [pool.submit(schedule) for _ in range(2)]
    assert [f.result() for f in outcomes] == [None, None]  # neither raised
    workflow_engine.wait_for_completion(order.id)
    first_run = workflow_client.workflow_state(order.id)
    workflow_client.workflow_schedule(instance_id=order.id, input=workflow_input)
    order = workflow_engine.wait_for_completion(order.id)

    engine = workflow_client.client()
    assert list(engine.iter_workflow_instance_ids()) == [order.id]
    history = engine.get_workflow_history(order.id)
    kinds = Counter(e.event_type.value for e in history)
    activities_run = Counter(e.name for e in history if e.event_type.value == "taskScheduled")
    assert kinds["executionStarted"] == 1
    assert activities_run == {
        "notify_activity": 2,  # received, completed
        "verify_inventory_activity": 1,
        "process_payment_activity": 1,
        "update_inventory_activity": 1,
    }
    again = workflow_client.workflow_state(order.id)
    assert first_run is not None and again is not None
    assert again.created_at == first_run.created_at  # not started anew
    assert order.status == OrderStatus.COMPLETED
    assert stock(cars) == (9, 0, 1)
    assert timeline(order).count(f"Order {order.id} has completed!") == 1


@pytest.mark.parametrize("token", [None, "not-this-installations-token"], ids=["none", "wrong"])
def test_a_worker_without_the_token_is_refused_work(idle_engine, cars, token):
    order = Order.objects.create(item=cars, quantity=1, total_cost=Decimal("5000"))
    # No worker yet: the start waits for one, so it runs aside.
    scheduling = threading.Thread(
        target=workflow_client.workflow_schedule,
        kwargs={"instance_id": order.id, "input": order_workflow_input(order)},
        daemon=True,
    )
    scheduling.start()
    wait_until(lambda: workflow_client.workflow_state(order.id) is not None)
    metadata = [("dapr-api-token", token)] if token is not None else None

    with grpc.insecure_channel(idle_engine.grpc_address) as channel:
        stream = stubs.TaskHubSidecarServiceStub(channel).GetWorkItems(
            pb.GetWorkItemsRequest(), metadata=metadata, timeout=30
        )
        with pytest.raises(grpc.RpcError) as refused:
            next(stream)  # a work item here, rather than the error, is what must not happen

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == "Unauthorized"  # daprd's answer (tests/realdapr)
    pending = workflow_client.workflow_state(order.id)
    assert pending is not None and pending.runtime_status.name == "PENDING"
    # The work was there to hand out: a worker with the token gets it.
    runtime = runtime_create(idle_engine.grpc_address)
    try:
        runtime.start()
        done = workflow_client.client().wait_for_workflow_completion(
            order.id, timeout_in_seconds=30
        )
    finally:
        runtime.shutdown()
    scheduling.join(30)
    assert done is not None and done.runtime_status.name == "COMPLETED"
