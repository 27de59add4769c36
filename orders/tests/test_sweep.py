"""runworker's sweep: an order it cannot handle, or a database that fails, never stops it."""

from __future__ import annotations

from datetime import timedelta
from decimal import InvalidOperation

import pytest
from django.db import OperationalError

from orders import selectors, worker
from orders.models import Order
from orders.services.orders import order_place, order_schedule
from orders.worker import Worker

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

    monkeypatch.setattr(worker, "order_schedule", fails_for_one_order)
    Worker(processes=0).sweep(grace=timedelta(0))

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
    Worker(processes=0).sweep(grace=timedelta(0))
    assert "Sweep stopped early, the database failed" in caplog.text
    assert no_engine == []

    monkeypatch.setattr(selectors, "orders_never_scheduled", orders_never_scheduled)
    Worker(processes=0).sweep(grace=timedelta(0))
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

    monkeypatch.setattr(worker, "order_schedule", database_away)
    Worker(processes=0).sweep(grace=timedelta(0))
    assert len(tried) == 1
    assert caplog.text.count("Sweep stopped early, the database failed") == 1
    assert "Sweep skipped order" not in caplog.text
