"""Record how real daprd traces workflows: the reference for the embedded sidecar's spans.

Starts everything on free ports under var/daprd-trace/ (nothing shared with `make dapr-services`):
Redis (Debian's redis-server, the actor state store), placement, scheduler (embedded etcd on
free ports), a Zipkin server (tools/zipkin.sh with ZIPKIN_PORT) and daprd from ~/.dapr/bin with a
Configuration sampling every trace to that Zipkin. This process hosts the order-shaped workflow
of sidecar/tests/trace_scenarios.py (the app's workflow and activity names, trivial bodies) with
dapr.ext.workflow's WorkflowRuntime, and exports the SDK's own activity spans to the same Zipkin
as service ``recorder-app``; then runs its scenarios: a small order; a large one approved by the
``manager_approval`` event before its timer; one whose timer wins; one whose payment fails and
is refunded; one that fails unhandled; and the small order with a W3C trace context from the
client, once as gRPC metadata ``traceparent`` and once in
``CreateInstanceRequest.parentTraceContext``. sidecar/tests/test_tracing.py runs the same on the
embedded sidecar and compares.

Writes tests/fixtures/daprd-trace-<scenario>.json (the spans Zipkin holds for each trace of the
instance: names, kinds, tags, parent ids, services) and tests/fixtures/daprd-metrics.txt (daprd's
workflow metric families from its /metrics after the scenarios).

    .venv/bin/python tools/record_daprd_trace.py      # needs ~/.dapr/bin (make dapr), java, mvn
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecar.tests.trace_scenarios import SCENARIOS, OrderShapedApp  # noqa: E402

STATE = ROOT / "var" / "daprd-trace"
FIXTURES = ROOT / "tests" / "fixtures"
BIN = Path(os.environ.get("DAPR_RUNTIME_PATH") or Path.home()) / ".dapr" / "bin"
APP_ID = "order-worker"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"port {port} did not open in {seconds:.0f} s")


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(STATE / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def write_resources(redis_port: int, zipkin_port: int) -> tuple[Path, Path]:
    resources = STATE / "resources"
    resources.mkdir(parents=True, exist_ok=True)
    (resources / "statestore.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\n"
        "spec:\n  type: state.redis\n  version: v1\n  metadata:\n"
        f'    - name: redisHost\n      value: "127.0.0.1:{redis_port}"\n'
        '    - name: redisPassword\n      value: ""\n'
        '    - name: actorStateStore\n      value: "true"\n'
    )
    config = STATE / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\n"
        'spec:\n  tracing:\n    samplingRate: "1"\n    zipkin:\n'
        f'      endpointAddress: "http://127.0.0.1:{zipkin_port}/api/v2/spans"\n'
    )
    return resources, config


def start_services(procs: Processes, zipkin_port: int) -> dict[str, int]:
    ports = {name: free_port() for name in ("redis", "placement", "scheduler", "etcd", "peer")}
    ports |= {name: free_port() for name in ("grpc", "http", "internal", "metrics", "public")}
    redis = procs.spawn(
        "redis",
        ["redis-server", "--bind", "127.0.0.1", "--port", str(ports["redis"]), "--save", "",
         "--appendonly", "no", "--dir", str(STATE)],
    )  # fmt: skip
    wait_port(ports["redis"], redis)
    placement = procs.spawn(
        "placement",
        [str(BIN / "placement"), "--listen-address", "127.0.0.1", "--port", str(ports["placement"]),
         "--healthz-listen-address", "127.0.0.1", "--healthz-port", str(free_port()),
         "--enable-metrics=false", "--initial-cluster", f"dapr-placement-0=127.0.0.1:{free_port()}"],
    )  # fmt: skip
    wait_port(ports["placement"], placement)
    shutil.rmtree(STATE / "etcd", ignore_errors=True)
    scheduler = procs.spawn(
        "scheduler",
        [str(BIN / "scheduler"), "--listen-address", "127.0.0.1", "--port", str(ports["scheduler"]),
         "--healthz-listen-address", "127.0.0.1", "--healthz-port", str(free_port()),
         "--enable-metrics=false", "--etcd-data-dir", str(STATE / "etcd"),
         "--etcd-client-port", str(ports["etcd"]),
         "--etcd-initial-cluster", f"dapr-scheduler-server-0=http://localhost:{ports['peer']}",
         "--override-broadcast-host-port", f"localhost:{ports['scheduler']}"],
    )  # fmt: skip
    wait_port(ports["scheduler"], scheduler)
    resources, config = write_resources(ports["redis"], zipkin_port)
    daprd = procs.spawn(
        "daprd",
        [str(BIN / "daprd"), "--app-id", APP_ID, "--dapr-grpc-port", str(ports["grpc"]),
         "--dapr-http-port", str(ports["http"]), "--dapr-internal-grpc-port", str(ports["internal"]),
         "--dapr-public-port", str(ports["public"]), "--metrics-port", str(ports["metrics"]),
         "--metrics-listen-address", "127.0.0.1", "--profile-port", str(free_port()),
         "--config", str(config), "--resources-path", str(resources),
         "--placement-host-address", f"127.0.0.1:{ports['placement']}",
         "--scheduler-host-address", f"127.0.0.1:{ports['scheduler']}", "--log-level", "info"],
    )  # fmt: skip
    wait_port(ports["grpc"], daprd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # daprd's outbound health: components loaded
        try:
            http_get(f"http://127.0.0.1:{ports['http']}/v1.0/healthz/outbound")
            break
        except OSError:
            time.sleep(0.3)
    return ports


def run_scenarios(grpc_port: int, shape: OrderShapedApp) -> dict[str, dict[str, Any]]:
    """Runs each scenario to its end; returns, per scenario, its instance id and how it began."""
    from dapr.ext.workflow import DaprWorkflowClient

    client = DaprWorkflowClient(host="127.0.0.1", port=str(grpc_port))
    run_id = secrets.token_hex(3)
    results = {}
    for name in SCENARIOS:
        results[name] = shape.run(client, name, f"{name}-{run_id}")
        print(f"{name}: {results[name]['runtime_status']}", flush=True)
    return results


def zipkin_traces(zipkin_port: int, instance_id: str) -> list[list[dict[str, Any]]]:
    query = urllib.parse.urlencode(
        {
            "annotationQuery": f"durabletask.task.instance_id={instance_id}",
            "limit": 100,
            "lookback": 3_600_000,
        }
    )
    return json.loads(http_get(f"http://127.0.0.1:{zipkin_port}/api/v2/traces?{query}"))


def simplified(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trace's spans in start order, keeping what the sidecar must match: no timings."""
    keep = ("id", "parentId", "name", "kind", "tags", "annotations")
    spans = sorted(trace, key=lambda s: (s.get("timestamp", 0), s["name"]))
    out = []
    for span in spans:
        item = {key: span[key] for key in keep if key in span}
        item["service"] = span.get("localEndpoint", {}).get("serviceName")
        item["traceId"] = span["traceId"]
        item["durationUs"] = span.get("duration")
        for note in item.get("annotations", []):
            note.pop("timestamp", None)
        out.append(item)
    return out


def workflow_metrics(metrics_port: int) -> str:
    text = http_get(f"http://127.0.0.1:{metrics_port}/metrics").decode()
    return (
        "\n".join(line for line in text.splitlines() if "workflow" in line or "activit" in line)
        + "\n"
    )


def main() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    zipkin_port = int(os.environ.get("ZIPKIN_PORT") or free_port())
    env = {**os.environ, "ZIPKIN_PORT": str(zipkin_port)}
    subprocess.run(["bash", str(ROOT / "tools" / "zipkin.sh"), "start"], check=True, env=env)
    procs = Processes()
    try:
        ports = start_services(procs, zipkin_port)
        from dapr.ext.workflow import WorkflowRuntime
        from opentelemetry import trace
        from opentelemetry.exporter.zipkin.json import ZipkinExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "recorder-app"}))
        provider.add_span_processor(
            SimpleSpanProcessor(
                ZipkinExporter(endpoint=f"http://127.0.0.1:{zipkin_port}/api/v2/spans")
            )
        )
        trace.set_tracer_provider(provider)
        runtime = WorkflowRuntime(host="127.0.0.1", port=str(ports["grpc"]))
        shape = OrderShapedApp()
        shape.register(runtime)
        runtime.start()
        try:
            scenarios = run_scenarios(ports["grpc"], shape)
            time.sleep(10)  # the approved order's timer fires after it completed: is it traced?
        finally:
            runtime.shutdown()
        metrics = workflow_metrics(ports["metrics"])
        version = subprocess.run(
            [str(BIN / "daprd"), "--version"], capture_output=True, text=True
        ).stdout.strip()
        deadline = time.monotonic() + 30
        for name, scenario in scenarios.items():
            instance_id = scenario["instance_id"]
            while True:  # spans arrive in batches: wait until the orchestration span is there
                traces = zipkin_traces(zipkin_port, instance_id)
                names = {s["name"] for t in traces for s in t}
                if any(n.startswith("orchestration||") for n in names):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            time.sleep(2)
            traces = zipkin_traces(zipkin_port, instance_id)
            record = {
                "recorded_with": f"daprd {version}, dapr.ext.workflow (dapr 1.19), "
                "tools/record_daprd_trace.py, Zipkin 3.6.1",
                "scenario": name,
                "instance_id": instance_id,
                "runtime_status": scenario["runtime_status"],
                "client_trace_id": scenario.get("client_trace_id"),
                "client_span_id": scenario.get("client_span_id"),
                "traces": [simplified(t) for t in traces],
            }
            path = FIXTURES / f"daprd-trace-{name}.json"
            path.write_text(json.dumps(record, indent=1) + "\n")
            print(f"wrote {path.relative_to(ROOT)}: {len(traces)} trace(s)")
        (FIXTURES / "daprd-metrics.txt").write_text(
            f"# daprd {version}: the workflow lines of /metrics after tools/record_daprd_trace.py\n"
            + metrics
        )
    finally:
        procs.stop()
        subprocess.run(["bash", str(ROOT / "tools" / "zipkin.sh"), "stop"], env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
