"""The app's order counters, served by the web process at ``/metrics`` (Prometheus' format).

Counted from the database when scraped, not in process memory: orders are placed by gunicorn's
workers and advanced by the worker's processes, so no single process sees them all, and a count
kept in memory would restart at zero with each of them. The database is the one place every
process writes, so any web process answers with the same, exact numbers, and they survive
restarts. (The engine's own counters are the sidecar's, on its metrics port, as daprd's.)

    orders_placed_total               every order ever placed
    orders_completed_total            orders that completed
    orders_failed_total               orders whose workflow failed (payment or a later step)
    orders_awaiting_approval          orders waiting for a manager now (a gauge)
    orders{status="..."}              orders in each status now

Only ``settings.METRICS_ALLOWED_ADDRESSES`` (loopback by default) may read it: order volumes
are business figures, and a scraper runs next to the app.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from orders.models import Order, OrderStatus


def order_counts() -> dict[str, int]:
    """Orders per status, every status present (0 when none)."""
    counts = {status.value: 0 for status in OrderStatus}
    for row in Order.objects.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


class OrderCollector:
    """prometheus_client calls ``collect`` on each scrape."""

    def collect(self) -> Iterator[Any]:
        counts = order_counts()
        yield CounterMetricFamily("orders_placed", "Orders placed.", value=sum(counts.values()))
        yield CounterMetricFamily(
            "orders_completed", "Orders completed.", value=counts[OrderStatus.COMPLETED]
        )
        yield CounterMetricFamily(
            "orders_failed", "Orders whose workflow failed.", value=counts[OrderStatus.FAILED]
        )
        yield GaugeMetricFamily(
            "orders_awaiting_approval",
            "Orders waiting for a manager's decision.",
            value=counts[OrderStatus.AWAITING_APPROVAL],
        )
        by_status = GaugeMetricFamily("orders", "Orders in each status.", labels=["status"])
        for status, count in counts.items():
            by_status.add_metric([status], count)
        yield by_status


def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.META.get("REMOTE_ADDR") not in settings.METRICS_ALLOWED_ADDRESSES:
        raise Http404
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OrderCollector())  # type: ignore[arg-type]
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
