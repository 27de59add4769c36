"""daprd's workflow metrics, served in Prometheus' text format on ``--metrics-port``.

The names, labels, help texts and latency buckets are daprd's (dapr/dapr pkg/diagnostics
workflow_monitoring.go, through OpenCensus' Prometheus exporter), as recorded from daprd 1.18.2's
``/metrics`` in tests/fixtures/daprd-metrics.txt. Latencies are in milliseconds, counters carry
no ``_total`` suffix: a dashboard built for daprd reads the sidecar unchanged. What each measures:

- ``operation``: a client command (create_workflow, add_event for a raise, terminate, suspend or
  resume, purge_workflow), its status and how long the call took;
- ``execution``: a workflow that ended (success, failed, terminated) and how long it ran since
  its first turn; ``scheduling_latency``: from its start (or scheduled start) to its first turn;
- ``activity_operation``: an activity handed to a worker, and how long it waited for one;
  ``activity_execution``: its result (success or failed) and how long the worker took.

Left out: daprd's payload size ratios (the sidecar enforces its message limits itself) and its
attestation counters (no attestation here). The counters live in memory: they start at zero
when the sidecar starts, as daprd's do.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from dapr.ext.workflow._durabletask.internal import protos as pb

from sidecar.engine.instance import Instance, now_ns
from sidecar.engine.status import COMPLETED, TERMINATED

if TYPE_CHECKING:
    from sidecar.engine.orchestration import TurnOutcome

# daprd's latency distribution in milliseconds (pkg/diagnostics: defaultLatencyDistribution).
LATENCY_BUCKETS_MS = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300,
    400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip
PREFIX = "dapr_runtime_workflow_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    """As Go formats a float64 in this format: integers without a decimal point."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Family:
    """One metric family: its series keyed by label values, in the order of ``labels`` (given
    sorted by name, as OpenCensus' exporter writes them)."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name = PREFIX + name
        self.help = help_text
        self.labels = labels
        self._label_text: dict[tuple[str, ...], str] = {}

    def label_text(self, values: tuple[str, ...]) -> str:
        text = self._label_text.get(values)
        if text is None:
            pairs = zip(self.labels, values, strict=True)
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
            self._label_text[values] = text
        return text


class Counter(Family):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[tuple[str, ...], int] = {}

    def inc(self, values: tuple[str, ...]) -> None:
        self.values[values] = self.values.get(values, 0) + 1

    def lines(self) -> list[str]:
        return [f"{self.name}{{{self.label_text(k)}}} {v}" for k, v in sorted(self.values.items())]


class Histogram(Family):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...]) -> None:
        super().__init__(name, help_text, labels)
        # label values -> [bucket counts..., +Inf count], sum
        self.series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, values: tuple[str, ...], amount: float) -> None:
        found = self.series.get(values)
        if found is None:
            found = self.series[values] = ([0] * (len(LATENCY_BUCKETS_MS) + 1), [0.0])
        found[0][bisect.bisect_left(LATENCY_BUCKETS_MS, amount)] += 1
        found[1][0] += amount

    def lines(self) -> list[str]:
        out = []
        for values, (counts, total) in sorted(self.series.items()):
            labels = self.label_text(values)
            running = 0
            for bound, count in zip((*LATENCY_BUCKETS_MS, "+Inf"), counts, strict=True):
                running += count
                out.append(f'{self.name}_bucket{{{labels},le="{bound}"}} {running}')
            out.append(f"{self.name}_sum{{{labels}}} {_number(total[0])}")
            out.append(f"{self.name}_count{{{labels}}} {running}")
        return out


def _ms(since_ns: int, until_ns: int) -> float:
    return (until_ns - since_ns) / 1e6


def _execution_status(status: int) -> str:
    if status == COMPLETED:
        return "success"
    return "terminated" if status == TERMINATED else "failed"


class WorkflowMetrics:
    """The engine observer (engine/observers.py) that counts as daprd does."""

    def __init__(self, app_id: str, namespace: str = "") -> None:
        self.scope = (app_id, namespace)
        op = ("app_id", "namespace", "operation", "status")
        run = ("app_id", "namespace", "status", "workflow_name")
        act = ("activity_name", "app_id", "namespace", "status")
        self.operation_count = Counter(
            "operation_count", "The number of successful/failed workflow operation requests.", op
        )
        self.operation_latency = Histogram(
            "operation_latency", "The latencies of responses for workflow operation requests.", op
        )
        self.execution_count = Counter(
            "execution_count",
            "The number of successful/failed/terminated/recoverable workflow executions.",
            run,
        )
        self.execution_latency = Histogram(
            "execution_latency", "The total time taken to run workflow to completion.", run
        )
        self.scheduling_latency = Histogram(
            "scheduling_latency",
            "Interval between workflow execution request and workflow execution.",
            ("app_id", "namespace", "workflow_name"),
        )
        self.activity_operation_count = Counter(
            "activity_operation_count",
            "The number of successful/failed activity operation requests.",
            act,
        )
        self.activity_operation_latency = Histogram(
            "activity_operation_latency",
            "The latencies of responses for activity operation requests.",
            act,
        )
        self.activity_execution_count = Counter(
            "activity_execution_count",
            "The number of successful/failed/recoverable activity executions.",
            act,
        )
        self.activity_execution_latency = Histogram(
            "activity_execution_latency",
            "The total time taken to run an activity to completion.",
            act,
        )
        self._scheduled: dict[str, dict[int, int]] = {}  # instance id -> task id -> scheduled at

    def families(self) -> list[Counter | Histogram]:
        return [
            self.activity_execution_count,
            self.activity_execution_latency,
            self.activity_operation_count,
            self.activity_operation_latency,
            self.execution_count,
            self.execution_latency,
            self.operation_count,
            self.operation_latency,
            self.scheduling_latency,
        ]

    def render(self) -> str:
        """The exposition: families in name order, each with HELP and TYPE, as daprd's."""
        out: list[str] = []
        for family in self.families():
            lines = family.lines()
            if lines:  # OpenCensus writes nothing for a family with no series yet
                out.append(f"# HELP {family.name} {family.help}")
                out.append(f"# TYPE {family.name} {family.kind}")
                out.extend(lines)
        return "\n".join(out) + "\n" if out else ""

    # -- the engine's hooks ----------------------------------------------------------------------

    def workflow_creating(self, started: pb.HistoryEvent, parent: pb.TraceContext | None) -> None:
        pass

    def operation_done(self, operation: str, instance_id: str, began_ns: int, failed: bool) -> None:
        key = (*self.scope, operation, "failed" if failed else "success")
        self.operation_count.inc(key)
        self.operation_latency.observe(key, _ms(began_ns, now_ns()))

    def turn_applying(self, inst: Instance, outcome: TurnOutcome, first_seq: int) -> None:
        now = now_ns()
        if first_seq == 0:
            self._first_turn(inst)
        if outcome.activities:
            scheduled = self._scheduled.setdefault(inst.instance_id, {})
            for request in outcome.activities:
                scheduled[request.taskId] = now
        if outcome.is_terminal:
            self._scheduled.pop(inst.instance_id, None)
            key = (*self.scope, _execution_status(outcome.status), inst.name)
            self.execution_count.inc(key)
            self.execution_latency.observe(key, _ms(inst.history[0].timestamp.ToNanoseconds(), now))

    def _first_turn(self, inst: Instance) -> None:
        """daprd's scheduling latency: from the start (or the scheduled start) to the first
        turn, whose ``workflowStarted`` opens the history."""
        turn_ns = inst.history[0].timestamp.ToNanoseconds()
        for event in inst.history[1:3]:
            if event.HasField("executionStarted"):
                es = event.executionStarted
                since = (
                    es.scheduledStartTimestamp
                    if es.HasField("scheduledStartTimestamp")
                    else event.timestamp
                )
                key = (*self.scope, inst.name)
                self.scheduling_latency.observe(key, max(0.0, _ms(since.ToNanoseconds(), turn_ns)))
                return

    def continuing_as_new(self, inst: Instance, started: pb.HistoryEvent) -> None:
        self._scheduled.pop(inst.instance_id, None)

    def activity_completed(
        self,
        inst: Instance,
        request: pb.ActivityRequest,
        response: pb.ActivityResponse,
        sent_ns: int,
    ) -> None:
        now = now_ns()
        scheduled = self._scheduled.get(inst.instance_id, {}).pop(request.taskId, sent_ns)
        sent = (request.name, *self.scope, "success")
        self.activity_operation_count.inc(sent)
        self.activity_operation_latency.observe(sent, _ms(scheduled, sent_ns))
        status = "failed" if response.HasField("failureDetails") else "success"
        ran = (request.name, *self.scope, status)
        self.activity_execution_count.inc(ran)
        self.activity_execution_latency.observe(ran, _ms(sent_ns, now))


async def start_metrics_server(metrics: WorkflowMetrics, host: str, port: int) -> tuple[Any, int]:
    """Serve ``GET /metrics`` on ``host:port`` (0 picks a free port) on the running loop;
    returns the aiohttp runner (``await runner.cleanup()`` stops it) and the port. Rendering
    a few hundred lines takes well under a millisecond, so it runs on the loop itself."""
    from aiohttp import web

    async def exposition(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]
