"""Locust users for ``python -m bench --web``: each one is an open order page polling its status
partial as htmx does (``hx-trigger="every 1s"``): GET /orders/<id>/ with ``HX-Request: true``,
then a pause of 0.5-1.5 s (1 s on average, so 50 users make about 50 requests a second); each
user starts at a random moment of the first second, as pages are not all opened at once.

Locust opens a connection when a request is due (gunicorn's sync workers close each one after
the response), as a browser does; wrk's ``delay()`` would connect first and wait afterwards,
pinning a sync worker on an idle connection, which no browser does."""

from __future__ import annotations

import os
import random

import gevent
from locust import FastHttpUser, between, task

ORDER_PATH = os.environ.get("BENCH_ORDER_PATH", "/")


class OrderPagePoller(FastHttpUser):
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        # Pages are opened at different moments: no 50-request burst at the first instant.
        gevent.sleep(random.uniform(0.0, 1.0))

    @task
    def poll_status(self) -> None:
        with self.client.get(
            ORDER_PATH, headers={"HX-Request": "true"}, name="status partial", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif "<html" in (response.text or "").lower():
                response.failure("a full page, not the partial")
