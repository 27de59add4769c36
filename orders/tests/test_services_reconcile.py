"""runworker's sweep (orders_reconcile): an order it cannot handle, or a database that fails,
never stops it; an order whose workflow went missing or ended unannounced is put right."""

from __future__ import annotations

from datetime import timedelta
from decimal import InvalidOperation
from types import SimpleNamespace

import pytest
from django.db import OperationalError
from django.utils import timezone

from orders import selectors, workflow_client
from orders.models import Order, OrderStatus
from orders.services import reconcile
from orders.services.inventory import inventory_reserve
from orders.services.orders import order_place, order_schedule
from orders.services.reconcile import orders_reconcile
from orders.tests.conftest import stock, timeline

# Committed data, as runworker sees it: a sweep starts by dropping stale connections.
pytestmark = pytest.mark.django_db(transaction=True)


def never_scheduled(engine_calls: list) -> None:
    """As if the engine had been away when the orders were placed."""
    Order.objects.update(scheduled_at=None)
    engine_calls.clear()


def test_a_sweep_skips_an_order_it_cannot_handle_and_goes_on(cars, no_engine, monkeypatch, caplog):
    broken = order_place(item_id=cars.pk, quantity=1)
    fine = order_place(item_id=cars.pk, quantity=2)
    never_scheduled(no_engine)
    schedule = order_schedule

    def fails_for_one_order(*, order_id: str) -> bool:
        if order_id == broken.id:
            raise InvalidOperation("a row no check foresaw")
        return schedule(order_id=order_id)

    monkeypatch.setattr(reconcile, "order_schedule", fails_for_one_order)
    orders_reconcile(grace=timedelta(0))

    assert no_engine == [("schedule", fine.id)]
    assert f"Sweep skipped order {broken.id}" in caplog.text


def test_a_sweep_whose_database_fails_is_logged_and_retried_later(
    cars, no_engine, monkeypatch, caplog
):
    order = order_place(item_id=cars.pk, quantity=1)
    never_scheduled(no_engine)
    orders_never_scheduled = selectors.orders_never_scheduled

    def database_away(*, older_than: timedelta) -> list[str]:
        raise OperationalError("database is locked")

    monkeypatch.setattr(selectors, "orders_never_scheduled", database_away)
    orders_reconcile(grace=timedelta(0))
    assert "Sweep stopped early, the database failed" in caplog.text
    assert no_engine == []

    monkeypatch.setattr(selectors, "orders_never_scheduled", orders_never_scheduled)
    orders_reconcile(grace=timedelta(0))
    assert no_engine == [("schedule", order.id)]


def test_a_sweep_stops_at_the_first_order_the_database_fails(cars, no_engine, monkeypatch, caplog):
    # A database that is away fails every order alike: one message, not one per order.
    order_place(item_id=cars.pk, quantity=1)
    order_place(item_id=cars.pk, quantity=2)
    never_scheduled(no_engine)
    tried: list[str] = []

    def database_away(*, order_id: str) -> bool:
        tried.append(order_id)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(reconcile, "order_schedule", database_away)
    orders_reconcile(grace=timedelta(0))
    assert len(tried) == 1
    assert caplog.text.count("Sweep stopped early, the database failed") == 1
    assert "Sweep skipped order" not in caplog.text


def untouched_for_a_while(order: Order) -> None:
    """As if the order's workflow had been scheduled and then not heard from for minutes."""
    Order.objects.filter(pk=order.id).update(
        scheduled_at=timezone.now(), updated_at=timezone.now() - timedelta(minutes=2)
    )


def test_a_sweep_reschedules_an_order_whose_workflow_the_engine_lost(cars, no_engine):
    order = order_place(item_id=cars.pk, quantity=1)
    untouched_for_a_while(order)
    no_engine.clear()  # the engine knows no instance for it (its database was replaced)

    orders_reconcile(grace=timedelta(0))
    assert no_engine == [("schedule", order.id)]
    order.refresh_from_db()
    assert order.scheduled_at is not None
    assert order.status == OrderStatus.PLACED


def test_a_sweep_closes_an_order_whose_workflow_failed_without_saying_so(
    cars, no_engine, monkeypatch
):
    order = order_place(item_id=cars.pk, quantity=3)
    inventory_reserve(order_id=order.id)
    untouched_for_a_while(order)
    failed = SimpleNamespace(runtime_status=SimpleNamespace(name="FAILED"))
    monkeypatch.setattr(workflow_client, "workflow_state", lambda instance_id: failed)

    orders_reconcile(grace=timedelta(0))
    order.refresh_from_db()
    assert order.status == OrderStatus.FAILED
    assert order.result == {"processed": False, "reason": "workflow failed"}
    assert stock(cars) == (10, 0, 0)
    assert timeline(order) == [f"Order {order.id} Failed!"]
