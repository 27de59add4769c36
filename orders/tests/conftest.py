"""Fixtures: a real embedded sidecar on a tmp_path database, a real WorkflowRuntime in-process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User

from orders import workflow_client
from orders.models import InventoryItem, Order
from orders.services.inventory import inventory_deduct, inventory_reserve
from orders.services.orders import order_place
from orders.services.payments import payment_process
from orders.workflows.order_processing import APPROVAL_EVENT
from orders.workflows.runtime import runtime_create
from sidecar.server import Sidecar


@dataclass
class WorkflowEngine:
    sidecar: Any
    runtime: Any

    @property
    def address(self) -> str:
        return self.sidecar.grpc_address

    def wait_for_completion(self, order_id: str, timeout: int = 30) -> Order:
        """Block until the engine reports the workflow finished, then return the order row."""
        state = workflow_client.client().wait_for_workflow_completion(
            order_id, timeout_in_seconds=timeout
        )
        assert state is not None, f"workflow {order_id} unknown to the engine"
        return Order.objects.select_related("item").get(pk=order_id)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a database condition that has no event to wait on (short interval, hard timeout)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _no_shared_ports_or_collectors(settings: Any) -> None:
    """What runworker reads by default (config/dapr-config.yaml exports to Zipkin on 9411, the
    sidecar's metrics take daprd's 9090) is shared by the whole machine: tests that want
    tracing or metrics configure their own."""
    settings.DAPR_CONFIG = ""
    settings.WORKFLOW_METRICS_PORT = None


@pytest.fixture
def workflow_engine(tmp_path: Any, transactional_db: None) -> Iterator[WorkflowEngine]:
    with engine_running(str(tmp_path / "workflows.db")) as engine:
        yield engine


@contextmanager
def engine_running(db_path: str) -> Iterator[WorkflowEngine]:
    """A real embedded sidecar on ``db_path`` and a real WorkflowRuntime, for as long as the
    block runs (a test's, or a browser test module's: see test_browser_shop.py)."""
    # With this installation's token, as runworker starts it: the app's clients must send it.
    sidecar = Sidecar(db_path=db_path, grpc_port=0, api_token=settings.DAPR_API_TOKEN)
    sidecar.start()
    try:
        workflow_client.use_address(sidecar.grpc_address)
        runtime = runtime_create(sidecar.grpc_address)
        try:
            runtime.start()
            yield WorkflowEngine(sidecar=sidecar, runtime=runtime)
        finally:
            runtime.shutdown()  # a start that failed has started the worker's thread too
    finally:
        workflow_client.use_address(None)
        sidecar.stop()


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Replace the engine boundary (orders/workflow_client.py) with a recorder, for rendering
    tests."""
    calls: list[tuple[str, Any]] = []

    def raise_event(instance_id: str, event_name: str, *, data: dict[str, Any]) -> None:
        assert event_name == APPROVAL_EVENT  # the only event the app raises
        calls.append(("approval", (instance_id, data["approval"])))

    monkeypatch.setattr(
        workflow_client,
        "workflow_schedule",
        lambda *, instance_id, input: calls.append(("schedule", instance_id)),
    )
    monkeypatch.setattr(workflow_client, "workflow_raise_event", raise_event)
    monkeypatch.setattr(
        workflow_client,
        "workflow_terminate",
        lambda instance_id: calls.append(("terminate", instance_id)),
    )
    monkeypatch.setattr(workflow_client, "workflow_state", lambda instance_id: None)
    monkeypatch.setattr(workflow_client, "workflow_history", lambda instance_id: None)
    return calls


@pytest.fixture
def cars(db: None) -> InventoryItem:
    return InventoryItem.objects.create(name="Cars", unit_cost=Decimal("5000"), on_hand=10)


@pytest.fixture
def paperclips(db: None) -> InventoryItem:
    return InventoryItem.objects.create(name="Paperclip", unit_cost=Decimal("5"), on_hand=100)


@pytest.fixture
def manager(db: None) -> User:
    user = User.objects.create_user("boss", password="pw-boss-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["approve_order", "view_order", "change_order", "view_inventoryitem"]
        )
    )
    return User.objects.get(pk=user.pk)  # fresh: permissions are cached on the instance


@pytest.fixture
def clerk(db: None) -> User:
    """Staff who may see and cancel orders but not approve them."""
    user = User.objects.create_user("clerk", password="pw-clerk-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_order", "change_order"])
    )
    return User.objects.get(pk=user.pk)


@pytest.fixture
def alice(db: None) -> User:
    """A customer."""
    return User.objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def bob(db: None) -> User:
    """Another customer."""
    return User.objects.create_user("bob", password="pw-bob-12345")


def stock(item: InventoryItem) -> tuple[int, int, int]:
    item.refresh_from_db()
    return item.on_hand, item.reserved, item.sold


def timeline(order: Order) -> list[str]:
    return list(order.events.values_list("message", flat=True))


def paid_order(item: InventoryItem, *, shipped: bool = False) -> Order:
    """An order of 4 whose workflow has reserved and taken the payment (and, if ``shipped``,
    updated the inventory)."""
    order = order_place(item_id=item.pk, quantity=4)
    inventory_reserve(order_id=order.id)
    payment_process(order_id=order.id)
    if shipped:
        inventory_deduct(order_id=order.id)
    return order


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The web fuzz tests' counts (orders/tests/test_fuzz_web.py), when they ran."""
    from orders.tests.test_fuzz_web import COUNTS, SECONDS

    if not COUNTS:
        return
    terminalreporter.section("web fuzz")
    for name, count in COUNTS.items():
        terminalreporter.write_line(f"{name}: {count} examples in {SECONDS.get(name, 0):.1f} s")
