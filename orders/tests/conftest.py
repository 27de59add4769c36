"""Fixtures: a real embedded sidecar on a tmp_path database, a real WorkflowRuntime in-process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from orders import engine
from orders.models import InventoryItem, Order


@dataclass
class WorkflowEngine:
    sidecar: Any
    runtime: Any

    @property
    def address(self) -> str:
        return self.sidecar.grpc_address

    def wait_for_completion(self, order_id: str, timeout: int = 30) -> Order:
        """Block until the engine reports the workflow finished, then return the order row."""
        state = engine.client().wait_for_workflow_completion(order_id, timeout_in_seconds=timeout)
        assert state is not None, f"workflow {order_id} unknown to the engine"
        return Order.objects.select_related("item").get(pk=order_id)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a database condition that has no event to wait on (short interval, hard timeout)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def workflow_engine(tmp_path: Any, transactional_db: None) -> Iterator[WorkflowEngine]:
    from sidecar import Sidecar

    sidecar = Sidecar(db_path=str(tmp_path / "workflows.db"), grpc_port=0)
    sidecar.start()
    engine.use_address(sidecar.grpc_address)
    runtime = engine.runtime_create(sidecar.grpc_address)
    runtime.start()
    try:
        yield WorkflowEngine(sidecar=sidecar, runtime=runtime)
    finally:
        runtime.shutdown()
        engine.use_address(None)
        sidecar.stop()


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Replace the engine boundary (orders/engine.py) with a recorder, for rendering tests."""
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        engine,
        "workflow_schedule",
        lambda *, instance_id, input: calls.append(("schedule", instance_id)),
    )
    monkeypatch.setattr(
        engine,
        "workflow_raise_approval",
        lambda instance_id, *, approved: calls.append(("approval", (instance_id, approved))),
    )
    monkeypatch.setattr(
        engine, "workflow_terminate", lambda instance_id: calls.append(("terminate", instance_id))
    )
    monkeypatch.setattr(engine, "workflow_state", lambda instance_id: None)
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


def stock(item: InventoryItem) -> tuple[int, int, int]:
    item.refresh_from_db()
    return item.on_hand, item.reserved, item.sold


def timeline(order: Order) -> list[str]:
    return list(order.events.values_list("message", flat=True))
