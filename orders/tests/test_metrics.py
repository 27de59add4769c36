"""The web's /metrics: order counters from the database, for loopback scrapers only."""

from __future__ import annotations

import pytest
from django.test import Client

from orders.models import Order, OrderStatus


@pytest.fixture
def orders_in_each_state(cars):
    for status in (
        OrderStatus.COMPLETED,
        OrderStatus.COMPLETED,
        OrderStatus.FAILED,
        OrderStatus.AWAITING_APPROVAL,
        OrderStatus.PLACED,
    ):
        Order.objects.create(item=cars, quantity=1, total_cost=5000, status=status)


def test_metrics_counts_orders_by_what_happened_to_them(client: Client, orders_in_each_state):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "orders_placed_total 5.0" in text
    assert "orders_completed_total 2.0" in text
    assert "orders_failed_total 1.0" in text
    assert "orders_awaiting_approval 1.0" in text
    assert 'orders{status="rejected"} 0.0' in text


@pytest.mark.django_db
def test_metrics_is_not_served_to_other_addresses():
    response = Client(REMOTE_ADDR="203.0.113.9").get("/metrics")
    assert response.status_code == 404
