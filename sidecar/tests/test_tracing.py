"""Tracing: the sidecar's spans, read back from a real Zipkin, against daprd's recorded ones.

tests/fixtures/daprd-trace-<scenario>.json holds what daprd 1.18.2 sent to Zipkin for each
scenario of sidecar/tests/trace_scenarios.py; the same scenarios run here on the sidecar (app id
``order-worker``, as in the recording) and each trace must have the same tree: span names,
kinds, tags, span events and parent/child links. What cannot be equal is normalised: ids and
times, and the two exporters' spelling of a span event (OpenTelemetry-Go writes
``name: {attrs}``, OpenTelemetry-Python ``{"name": {attrs}}``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dapr.ext.workflow import DaprWorkflowContext, WorkflowActivityContext
from opentelemetry import trace

from sidecar import Sidecar
from sidecar.tests.harness import WorkflowApp, sidecar_start
from sidecar.tests.trace_scenarios import SCENARIOS, OrderShapedApp
from sidecar.tests.zipkin import Trace, Zipkin, by_id, children, named, parent_of

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
APP_ID = "order-worker"
# Tags that differ by run or by exporter, not by what the engine did.
VOLATILE_TAGS = {
    "durabletask.task.instance_id",
    "durabletask.fire_at",
    "service.name",
    "otel.library.name",
    "otel.library.version",
    "otel.scope.version",
}


def _event(value: str) -> tuple[str, dict[str, Any]]:
    if value.startswith("{"):  # OpenTelemetry-Python's Zipkin encoder
        ((name, attributes),) = json.loads(value).items()
        return name, attributes
    name, _, attributes = value.partition(": ")  # OpenTelemetry-Go's
    return name, json.loads(attributes)


def canonical(trace_: Trace, span: dict[str, Any], instance_id: str) -> Any:
    """A span and its subtree, without ids, times or what varies between runs."""
    tags = {
        key: value.replace(instance_id, "<instance>")
        for key, value in span.get("tags", {}).items()
        if key not in VOLATILE_TAGS
    }
    events = sorted(json.dumps(_event(a["value"])) for a in span.get("annotations") or [])
    kids = sorted(
        json.dumps(canonical(trace_, child, instance_id)) for child in children(trace_, span)
    )
    return {
        "name": span["name"],
        "kind": span.get("kind"),
        "tags": tags,
        "events": events,
        "children": kids,
    }


def engine_spans(trace_: Trace, service: str) -> Trace:
    return [
        s
        for s in trace_
        if s.get("localEndpoint", {}).get("serviceName", s.get("service")) == service
    ]


def root(trace_: Trace) -> dict[str, Any]:
    ids = by_id(trace_)
    (top,) = [s for s in trace_ if s.get("parentId") not in ids]
    return top


def daprd_recording(scenario: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"daprd-trace-{scenario}.json").read_text())


@pytest.fixture(scope="module")
def sidecar_traces(zipkin: Zipkin, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every scenario run once on a traced sidecar; per scenario, the run and its traces."""
    tmp = tmp_path_factory.mktemp("tracing")
    sidecar = sidecar_start(
        tmp / "workflows.db", config=str(zipkin.config_file(tmp / "config.yaml")), app_id=APP_ID
    )
    app = WorkflowApp(sidecar.grpc_address)
    shape = OrderShapedApp()
    shape.register(app.runtime)
    client = app.start()
    run = secrets.token_hex(3)
    try:
        results = {name: shape.run(client, name, f"{name}-{run}") for name in SCENARIOS}
    finally:
        app.close()
        sidecar.stop()  # flushes the spans still queued

    def complete(traces: list[Trace]) -> bool:
        return any(named(t, "orchestration||") for t in traces)

    for result in results.values():
        result["traces"] = zipkin.wait_for(
            lambda r=result: zipkin.traces_tagged("durabletask.task.instance_id", r["instance_id"]),
            complete,
        )
    return results


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_trace_has_daprds_spans_names_tags_and_nesting(sidecar_traces, scenario):
    ours = sidecar_traces[scenario]
    theirs = daprd_recording(scenario)
    assert ours["runtime_status"] == theirs["runtime_status"]
    assert len(ours["traces"]) == len(theirs["traces"]) == 1
    our_trace = engine_spans(ours["traces"][0], APP_ID)
    their_trace = engine_spans(theirs["traces"][0], "order-worker")
    assert canonical(our_trace, root(our_trace), ours["instance_id"]) == canonical(
        their_trace, root(their_trace), theirs["instance_id"]
    )
    for span in our_trace:
        if "durabletask.task.instance_id" in span["tags"]:
            assert span["tags"]["durabletask.task.instance_id"] == ours["instance_id"]


@pytest.mark.parametrize("scenario", ["traceparent-metadata", "parent-trace-context"])
def test_a_traced_callers_span_is_the_parent_of_the_workflows_trace(sidecar_traces, scenario):
    ours = sidecar_traces[scenario]
    (trace_,) = ours["traces"]
    top = root(trace_)
    assert top["traceId"] == ours["client_trace_id"]
    assert top["parentId"] == ours["client_span_id"]
    expected = (
        "/taskhubsidecarservice/startinstance"
        if scenario == "traceparent-metadata"
        else ("create_orchestration||order_processing_workflow")
    )
    assert top["name"] == expected


def test_the_orchestration_span_spans_the_workflow_and_parents_each_activity(sidecar_traces):
    (trace_,) = sidecar_traces["small"]["traces"]
    (orchestration,) = named(trace_, "orchestration||")
    activities = named(trace_, "activity||")
    assert [
        a["tags"]["durabletask.task.name"] for a in sorted(activities, key=lambda s: s["timestamp"])
    ] == [
        "notify_activity",
        "verify_inventory_activity",
        "process_payment_activity",
        "update_inventory_activity",
        "notify_activity",
    ]
    for activity in activities:
        assert parent_of(trace_, activity) is orchestration
        assert orchestration["timestamp"] <= activity["timestamp"]
        assert activity["timestamp"] + activity["duration"] <= (
            orchestration["timestamp"] + orchestration["duration"]
        )
    assert (
        parent_of(trace_, orchestration)["name"]
        == "create_orchestration||order_processing_workflow"
    )


# -- trace context beyond one run ------------------------------------------------------------------


@pytest.fixture
def traced(zipkin: Zipkin, tmp_path: Path) -> Iterator[Sidecar]:
    sidecar = sidecar_start(
        tmp_path / "workflows.db", config=str(zipkin.config_file(tmp_path / "config.yaml"))
    )
    try:
        yield sidecar
    finally:
        sidecar.stop()


def _instance_traces(zipkin: Zipkin, instance_id: str, spans: int) -> list[Trace]:
    return zipkin.wait_for(
        lambda: zipkin.traces_tagged("durabletask.task.instance_id", instance_id),
        lambda traces: sum(len(t) for t in traces) >= spans,
    )


def test_the_worker_gets_the_activity_spans_context_to_parent_its_own(traced, zipkin):
    seen: list[str] = []

    def work(ctx: WorkflowActivityContext, _: Any) -> None:
        # dapr.ext.workflow opens its own span from the work item's parentTraceContext; with
        # no tracer provider in this process that span is the remote parent itself.
        seen.append(f"{trace.get_current_span().get_span_context().span_id:016x}")

    def flow(ctx: DaprWorkflowContext, _: Any) -> Any:
        yield ctx.call_activity(work)

    app = WorkflowApp(traced.grpc_address)
    app.runtime.register_activity(work)
    app.runtime.register_workflow(flow)
    try:
        client = app.start()
        client.schedule_new_workflow(flow, instance_id="ctx-1")
        client.wait_for_workflow_completion("ctx-1", timeout_in_seconds=30)
    finally:
        app.close()
    (trace_,) = _instance_traces(zipkin, "ctx-1", 3)
    (activity,) = named(trace_, "activity||work")
    assert seen == [activity["id"]]


def test_span_ids_survive_a_restart_of_the_sidecar(zipkin, tmp_path):
    db = tmp_path / "workflows.db"
    config = str(zipkin.config_file(tmp_path / "config.yaml"))

    def step(ctx: WorkflowActivityContext, _: Any) -> None:
        pass

    def flow(ctx: DaprWorkflowContext, _: Any) -> Any:
        yield ctx.call_activity(step)
        yield ctx.wait_for_external_event("go")
        yield ctx.call_activity(step)

    sidecar = sidecar_start(db, config=config)
    port = sidecar.grpc_port
    app = WorkflowApp(sidecar.grpc_address)
    app.runtime.register_activity(step)
    app.runtime.register_workflow(flow)
    client = app.start()
    try:
        client.schedule_new_workflow(flow, instance_id="restart-1")
        client.wait_for_workflow_start("restart-1", timeout_in_seconds=30)
        _instance_traces(zipkin, "restart-1", 3)  # create, StartInstance's, the first activity
        sidecar.stop()
        sidecar = sidecar_start(db, config=config, grpc_port=port)
        client.raise_workflow_event("restart-1", "go")
        client.wait_for_workflow_completion("restart-1", timeout_in_seconds=30)
    finally:
        app.close()
        sidecar.stop()
    (trace_,) = _instance_traces(zipkin, "restart-1", 5)
    (orchestration,) = named(trace_, "orchestration||flow")
    steps = named(trace_, "activity||step")
    assert len(steps) == 2
    assert all(parent_of(trace_, s) is orchestration for s in steps)
    assert json.loads(orchestration["annotations"][0]["value"]) == {
        "Received external event": {"name": "go", "size": 0}
    }


def test_a_child_workflows_span_is_a_child_of_its_parents(traced, zipkin):
    def child(ctx: DaprWorkflowContext, _: Any) -> Any:
        return "done"

    def parent(ctx: DaprWorkflowContext, _: Any) -> Any:
        return (yield ctx.call_child_workflow(child, instance_id="kid-1"))

    app = WorkflowApp(traced.grpc_address)
    app.runtime.register_workflow(child)
    app.runtime.register_workflow(parent)
    try:
        client = app.start()
        client.schedule_new_workflow(parent, instance_id="mom-1")
        client.wait_for_workflow_completion("mom-1", timeout_in_seconds=30)
    finally:
        app.close()
    (trace_,) = _instance_traces(zipkin, "mom-1", 4)
    (mine,) = named(trace_, "orchestration||parent")
    (kid,) = named(trace_, "orchestration||child")
    assert parent_of(trace_, kid) is mine
    assert kid["tags"]["durabletask.task.instance_id"] == "kid-1"


def test_continue_as_new_ends_a_generations_span_and_starts_the_next(traced, zipkin):
    def counter(ctx: DaprWorkflowContext, n: int) -> Any:
        if n < 1:
            ctx.continue_as_new(n + 1)
            return None
        return n

    app = WorkflowApp(traced.grpc_address)
    app.runtime.register_workflow(counter)
    try:
        client = app.start()
        client.schedule_new_workflow(counter, input=0, instance_id="can-1")
        client.wait_for_workflow_completion("can-1", timeout_in_seconds=30)
    finally:
        app.close()
    (trace_,) = _instance_traces(zipkin, "can-1", 4)
    generations = sorted(named(trace_, "orchestration||counter"), key=lambda s: s["timestamp"])
    assert [g["tags"]["durabletask.runtime_status"] for g in generations] == [
        "CONTINUED_AS_NEW",
        "COMPLETED",
    ]
    assert parent_of(trace_, generations[0]) is parent_of(trace_, generations[1])


# -- off ---------------------------------------------------------------------------------------------


def test_without_a_tracing_section_nothing_is_traced_and_nothing_observes(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\n")
    with Sidecar(str(tmp_path / "a.db"), grpc_port=0, config=str(config)) as sidecar:
        assert sidecar.tracing is None
        assert sidecar.engine is not None and sidecar.engine.observers == ()


def test_a_sampling_rate_of_zero_turns_tracing_off(zipkin, tmp_path):
    config = zipkin.config_file(tmp_path / "config.yaml", sampling_rate="0")
    with Sidecar(str(tmp_path / "a.db"), grpc_port=0, config=str(config)) as sidecar:
        assert sidecar.tracing is None
        assert sidecar.engine is not None and sidecar.engine.observers == ()
