"""The /metrics endpoint: daprd's workflow metrics, as daprd 1.18.2 names and labels them
(tests/fixtures/daprd-metrics.txt, recorded from its /metrics)."""

from __future__ import annotations

import re
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar import Sidecar
from sidecar.__main__ import parse_args
from sidecar.server import SidecarStartError
from sidecar.tests.harness import WorkflowApp, sidecar_start
from sidecar.tests.trace_scenarios import OrderShapedApp

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "daprd-metrics.txt"
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
# Families daprd has that the sidecar leaves out (see sidecar/metrics.py).
NOT_KEPT = ("payload_size_ratio", "actor_")


def families(text: str) -> dict[str, str]:
    """Family name -> its TYPE line's type."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            out.append((match["name"], labels, float(match["value"])))
    return out


def value(text: str, name: str, **labels: str) -> float:
    found = [v for n, ls, v in samples(text) if n == name and labels.items() <= ls.items()]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[Sidecar]:
    sidecar = sidecar_start(tmp_path / "workflows.db", metrics_port=0, app_id="order-worker")
    try:
        yield sidecar
    finally:
        sidecar.stop()


def scrape(sidecar: Sidecar) -> str:
    url = f"http://127.0.0.1:{sidecar.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode()


def test_after_workflows_metrics_has_daprds_workflow_families_and_labels(metered):
    app = WorkflowApp(metered.grpc_address)
    shape = OrderShapedApp()
    shape.register(app.runtime)
    client = app.start()
    run = secrets.token_hex(3)
    try:
        for scenario in ("small", "payment-failed", "failed-unhandled", "approved"):
            shape.run(client, scenario, f"{scenario}-{run}")
    finally:
        app.close()
    text = scrape(metered)
    recorded = FIXTURE.read_text()
    theirs = {n: t for n, t in families(recorded).items() if not any(x in n for x in NOT_KEPT)}
    assert families(text) == theirs
    # The same label names on every family, as daprd's.
    label_names = {n.removesuffix("_bucket"): set(ls) - {"le"} for n, ls, _ in samples(recorded)}
    for name, labels, _ in samples(text):
        assert set(labels) - {"le"} == label_names[name.removesuffix("_bucket")], name

    scope = {"app_id": "order-worker", "namespace": ""}
    wf = {**scope, "workflow_name": "order_processing_workflow"}
    assert value(text, "dapr_runtime_workflow_execution_count", **wf, status="success") == 3
    assert value(text, "dapr_runtime_workflow_execution_count", **wf, status="failed") == 1
    assert value(text, "dapr_runtime_workflow_execution_latency_count", **wf, status="success") == 3
    assert value(text, "dapr_runtime_workflow_scheduling_latency_count", **wf) == 4
    ops = "dapr_runtime_workflow_operation_count"
    assert value(text, ops, **scope, operation="create_workflow", status="success") == 4
    assert value(text, ops, **scope, operation="add_event", status="success") == 1
    acts = "dapr_runtime_workflow_activity_execution_count"
    payment = {**scope, "activity_name": "process_payment_activity"}
    assert value(text, acts, **payment, status="success") == 2
    assert value(text, acts, **payment, status="failed") == 2
    assert value(text, acts, **scope, activity_name="notify_activity", status="success") == 7
    # A histogram's buckets are cumulative and end with everything in +Inf.
    name = "dapr_runtime_workflow_activity_execution_latency_bucket"
    buckets = [
        v for n, ls, v in samples(text) if n == name and ls["activity_name"] == "notify_activity"
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 7
    assert 'le="1"' in text and 'le="100000"' in text and 'le="+Inf"' in text


def test_a_failed_operation_is_counted_failed(metered):
    app = WorkflowApp(metered.grpc_address)
    try:
        with pytest.raises(Exception, match="(?i)no such instance|not found"):
            app.client.pause_workflow("nobody")
    finally:
        app.close()
    text = scrape(metered)
    assert (
        value(text, "dapr_runtime_workflow_operation_count", operation="add_event", status="failed")
        == 1
    )


def test_metrics_listen_on_loopback_only_and_refuse_a_taken_port(metered, tmp_path):
    url = f"http://127.0.0.1:{metered.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
    with pytest.raises(SidecarStartError, match=f"port {metered.metrics_port}"):
        sidecar_start(tmp_path / "other.db", metrics_port=metered.metrics_port)


def test_no_metrics_port_means_no_endpoint_and_no_observer(sidecar):
    assert sidecar.metrics is None and sidecar.metrics_port is None
    assert sidecar.engine is not None and sidecar.engine.observers == ()


def test_command_line_serves_metrics_on_9090_by_default_as_daprd(tmp_path):
    assert parse_args([]).metrics_port == 9090
    assert parse_args(["--metrics-port", "0"]).metrics_port == 0
    assert parse_args(["--metrics-port", "off"]).metrics_port is None
    with pytest.raises(SystemExit):
        parse_args(["--metrics-port", "lots"])
