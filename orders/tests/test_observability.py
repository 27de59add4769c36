"""An order's trace, end to end: the site run as an operator runs it (gunicorn and runworker,
real processes, the embedded sidecar), tracing to a real Zipkin through config/dapr-config.yaml's
settings, orders placed through the web form; then Zipkin's API must hold one trace per order.

    POST /  (orders-web)
      /TaskHubSidecarService/StartInstance       (orders-worker: the embedded sidecar)
        create_orchestration||order_processing_workflow
          orchestration||order_processing_workflow
            activity||<name>                     one per activity
              activity: <name>                   (orders-worker: dapr.ext.workflow's worker)
                orders.<name>                    the activity's service call and queries
            timer                                when the approval timed out

Also the sidecar's /metrics after those orders, and the web's order counters.
"""

from __future__ import annotations

import html
import http.cookiejar
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from orders.tests.test_commands import OutputReader, _env, _manage
from sidecar.tests.zipkin import Trace, Zipkin, children, free_port, named, parent_of

BASE_DIR = settings.BASE_DIR
GUNICORN = Path(sys.executable).parent / "gunicorn"
MANAGER_PASSWORD = "pw-manager-123"  # what test_commands' _env gives `seed`
TIMEOUT_S = 8  # the approval timeout: long enough to approve one order, short to wait out another


@dataclass
class Site:
    url: str
    metrics_port: int
    opener: urllib.request.OpenerDirector

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.url + path, timeout=30) as response:
            return response.geturl(), response.read().decode()

    def post(self, path: str, fields: dict[str, Any]) -> tuple[str, str]:
        data = urllib.parse.urlencode(fields, doseq=True).encode()
        with self.opener.open(self.url + path, data=data, timeout=30) as response:
            return response.geturl(), response.read().decode()

    def log_in(self) -> None:
        """Log in on the shop's login page as the manager `seed` made (staff may order too)."""
        url, login = self.get("/accounts/login/")
        self.post(
            "/accounts/login/",
            {
                "csrfmiddlewaretoken": hidden(login, "csrfmiddlewaretoken"),
                "username": "manager",
                "password": MANAGER_PASSWORD,
            },
        )

    def place_order(self, item: str, quantity: int) -> str:
        """Fill in and send the order form, as the browser does; returns the order's id."""
        url, page = self.get("/")
        if "/accounts/login/" in url:
            self.log_in()
            url, page = self.get("/")
        (item_id,) = re.findall(
            rf'value="(\d+)"[^>]*>\s*<span class="item-name">{item}</span>', page
        )
        url, _ = self.post(
            "/",
            {
                "csrfmiddlewaretoken": hidden(page, "csrfmiddlewaretoken"),
                "form_token": hidden(page, "form_token"),
                "item": item_id,
                "quantity": quantity,
            },
        )
        (order_id,) = re.findall(r"/orders/([0-9a-f]{32})/$", url)
        return order_id

    def status(self, order_id: str) -> str:
        return self.get(f"/orders/{order_id}/")[1]

    def approve(self, order_id: str) -> None:
        """Log in to the admin as the manager `seed` made and approve the order."""
        _, login = self.get("/admin/login/")
        self.post(
            "/admin/login/?next=/admin/",
            {
                "csrfmiddlewaretoken": hidden(login, "csrfmiddlewaretoken"),
                "username": "manager",
                "password": MANAGER_PASSWORD,
                "next": "/admin/",
            },
        )
        _, changelist = self.get("/admin/orders/order/")
        _, page = self.post(
            "/admin/orders/order/",
            {
                "csrfmiddlewaretoken": hidden(changelist, "csrfmiddlewaretoken"),
                "action": "approve_orders",
                "_selected_action": order_id,
            },
        )
        assert "approved" in page.lower(), page[:2000]


def hidden(page: str, name: str) -> str:
    """A hidden field's value (a page with several forms repeats the CSRF token: any will do)."""
    values = re.findall(rf'name="{name}" value="([^"]*)"', page)
    assert values, f"no {name} on the page"
    return html.unescape(values[0])


def wait_until(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout:.0f} s: {what}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def traced_site(zipkin: Zipkin, tmp_path: Path) -> Iterator[Site]:
    config = zipkin.config_file(tmp_path / "dapr-config.yaml")
    web_port, metrics_port = free_port(), free_port()
    env = {
        **_env(tmp_path),
        "DAPR_CONFIG": str(config),
        "WORKFLOW_GRPC_PORT": str(free_port()),
        "WORKFLOW_METRICS_PORT": str(metrics_port),
        "ORDER_APPROVAL_THRESHOLD": "10000",
        "ORDER_APPROVAL_TIMEOUT": str(TIMEOUT_S),
    }
    for command in (["migrate", "--noinput"], ["seed"]):
        result = _manage(tmp_path, *command)
        assert result.returncode == 0, result.stderr
    run = {"cwd": BASE_DIR, "env": env, "text": True, "stdout": subprocess.PIPE}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "runworker", "--processes=1"],
        stderr=subprocess.STDOUT,
        **run,  # type: ignore[call-overload]
    )
    worker_output = OutputReader(worker)
    web = subprocess.Popen(
        [str(GUNICORN), "ordersite.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "1"],
        stderr=subprocess.STDOUT,
        **run,  # type: ignore[call-overload]
    )
    web_output = OutputReader(web)
    jar = http.cookiejar.CookieJar()
    site = Site(
        f"http://127.0.0.1:{web_port}",
        metrics_port,
        urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)),
    )
    try:
        worker_output.wait_for("connected to 127.0.0.1:")

        def serving() -> bool:
            try:
                return bool(site.get("/"))
            except OSError:
                assert web.poll() is None, web_output.text
                return False

        wait_until(serving, "gunicorn serves the site")
        yield site
    finally:
        stop(web)
        stop(worker)  # the sidecar flushes its queued spans as it stops


def one_trace(zipkin: Zipkin, order_id: str, done: Any) -> Trace:
    traces = zipkin.wait_for(
        lambda: zipkin.traces_tagged("durabletask.task.instance_id", order_id),
        lambda found: len(found) == 1 and done(found[0]),
    )
    assert len(traces) == 1, f"{order_id}: {len(traces)} traces"
    return traces[0]


def service(span: dict[str, Any]) -> str:
    return str(span.get("localEndpoint", {}).get("serviceName"))


def only_child(trace_: Trace, span: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [s for s in children(trace_, span) if s["name"] == name]
    return found


def activities_in_order(trace_: Trace) -> list[str]:
    spans = sorted(named(trace_, "activity||"), key=lambda s: s["timestamp"])
    return [s["name"].removeprefix("activity||") for s in spans]


def complete(trace_: Trace) -> bool:
    """The workflow's span, and each activity's spans from the worker, have all arrived."""
    return bool(named(trace_, "orchestration||")) and len(named(trace_, "activity: ")) == len(
        named(trace_, "activity||")
    ) == len(named(trace_, "orders."))


def test_an_order_placed_in_the_browser_is_one_trace_from_request_to_database(traced_site, zipkin):
    small = traced_site.place_order("Paperclip", 2)
    approved = traced_site.place_order("Cars", 3)  # $15,000, over the 10,000 threshold
    timed_out = traced_site.place_order("Cars", 4)
    wait_until(lambda: "Awaiting approval" in traced_site.status(approved), "approval asked")
    traced_site.approve(approved)

    trace_ = one_trace(zipkin, small, complete)
    (request,) = [s for s in trace_ if "parentId" not in s]
    assert (service(request), request["kind"], request["name"]) == (
        "orders-web",
        "SERVER",
        "post /",
    )
    call = only_child(trace_, request, "/taskhubsidecarservice/startinstance")
    assert service(call) == "orders-worker"
    create = only_child(trace_, call, "create_orchestration||order_processing_workflow")
    workflow = only_child(trace_, create, "orchestration||order_processing_workflow")
    assert workflow["tags"]["durabletask.runtime_status"] == "COMPLETED"
    assert workflow["tags"]["durabletask.task.instance_id"] == small
    assert activities_in_order(trace_) == [
        "notify_activity",
        "verify_inventory_activity",
        "process_payment_activity",
        "update_inventory_activity",
        "notify_activity",
    ]
    for activity in named(trace_, "activity||"):
        assert parent_of(trace_, activity) is workflow
        name = activity["name"].removeprefix("activity||")
        in_worker = only_child(trace_, activity, f"activity: {name}")
        work = only_child(trace_, in_worker, f"orders.{name}")
        assert work["tags"]["order.id"] == small
        assert work["tags"]["db.system"] == "sqlite"

    trace_ = one_trace(zipkin, approved, complete)
    (workflow,) = named(trace_, "orchestration||")
    assert workflow["tags"]["durabletask.runtime_status"] == "COMPLETED"
    (event,) = workflow["annotations"]
    assert '"name": "manager_approval"' in event["value"]
    assert "read_approval_decision_activity" in activities_in_order(trace_)

    wait_until(lambda: "Cancelled" in traced_site.status(timed_out), "the approval timed out")
    trace_ = one_trace(zipkin, timed_out, lambda t: complete(t) and bool(named(t, "timer")))
    (workflow,) = named(trace_, "orchestration||")
    (timer,) = named(trace_, "timer")
    assert parent_of(trace_, timer) is workflow
    assert activities_in_order(trace_)[-2:] == ["release_inventory_activity", "notify_activity"]

    # The engine's counters, under daprd's names, on the sidecar's metrics port.
    with urllib.request.urlopen(
        f"http://127.0.0.1:{traced_site.metrics_port}/metrics", timeout=10
    ) as response:
        metrics = response.read().decode()
    labels = 'app_id="orders-worker",namespace="",status="success",workflow_name="order_processing_workflow"'
    assert f"dapr_runtime_workflow_execution_count{{{labels}}} 3" in metrics
    assert "dapr_runtime_workflow_activity_execution_count{" in metrics
    # The app's own, on the web's.
    _, counters = traced_site.get("/metrics")
    assert "orders_placed_total 3.0" in counters
    assert "orders_completed_total 2.0" in counters
