"""Workflow spans as daprd emits them, exported with OpenTelemetry's SDK.

The reference is daprd 1.18.2's own output, recorded from a real Zipkin
(tests/fixtures/daprd-trace-*.json); daprd's spans come from durabletask-go (api/helpers
tracing.go, backend/orchestration.go, backend/activity.go) and its gRPC tracing middleware
(dapr/dapr pkg/diagnostics/grpc_tracing.go). One trace per workflow:

    /TaskHubSidecarService/StartInstance    CLIENT  the API call (its parent: the caller's
                                                    gRPC metadata ``traceparent``)
      create_orchestration||<workflow>      CLIENT  until the start returns (parent: the
                                                    request's parentTraceContext, else the call)
        orchestration||<workflow>           SERVER  first turn to completion; external events,
                                                    suspend, resume as span events
          activity||<activity>              SERVER  scheduled to result, one per activity
          timer                             INTERNAL when a timer fires into a running workflow
          orchestration||<child workflow>   SERVER  a child workflow's own span

The trace context lives where daprd keeps it, in the history: ``executionStarted`` holds the
create span's context and the orchestration span's id (``workflowSpanID``), ``taskScheduled``
the orchestration's context, and the ``ActivityRequest`` a worker receives the activity span's,
so the SDK's own activity span (``activity: <name>``, opened by dapr.ext.workflow's worker when
OpenTelemetry is installed) is its child, and a restart changes nothing.

Every span is made when its end is known, from times the engine already has, with the id chosen
when it began, and the SDK's BatchSpanProcessor exports it on its own thread. The spans that may
begin a trace (the API call's, the create span) go through the SDK's tracer and its sampler;
the workflow's own spans, whose sampled parent is known, are handed to the processors finished
(``ReadableSpan``): the tracer's per-span work (sampling, attribute checks, locks) was a fifth
of the sidecar's CPU per workflow at samplingRate 1.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from dapr.ext.workflow._durabletask.internal import protos as pb
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sidecar.engine.instance import Instance, now_ns
from sidecar.engine.observers import CREATE_WORKFLOW
from sidecar.engine.orchestration import TurnOutcome
from sidecar.engine.status import STATUS_NAMES
from sidecar.tracing_api import TraceInterceptor, parent_context, parse_traceparent, to_traceparent
from sidecar.tracing_config import TracingSettings, add_exporters

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET = Status(StatusCode.UNSET)

# History events daprd shows on the orchestration span (durabletask-go backend/orchestration.go
# addNotableEventsToSpan), and the attributes each carries.
NOTABLE_EVENTS: dict[str, tuple[str, Callable[[pb.HistoryEvent], dict[str, Any]]]] = {
    "eventRaised": (
        "Received external event",
        lambda e: {"name": e.eventRaised.name, "size": len(e.eventRaised.input.value)},
    ),
    "executionSuspended": (
        "Execution suspended",
        lambda e: {"reason": e.executionSuspended.input.value},
    ),
    "executionResumed": (
        "Execution resumed",
        lambda e: {"reason": e.executionResumed.input.value},
    ),
    "executionStalled": (
        "Execution stalled",
        lambda e: {
            "reason": pb.StalledReason.Name(e.executionStalled.reason),
            "description": e.executionStalled.description,
        },
    ),
}


def _named(kind: str, name: str, version: str) -> str:
    """durabletask-go's span names: ``kind||name``, with ``||version`` when there is one."""
    return f"{kind}||{name}||{version}" if version else f"{kind}||{name}"


class WorkflowTracing:
    """The engine observer (engine/observers.py) that emits the workflow's spans."""

    def __init__(self, settings: TracingSettings, service_name: str) -> None:
        # Only the service's name, as daprd's spans carry (its app id).
        self.resource = Resource({"service.name": service_name})
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(settings.sampling_rate)),
            resource=self.resource,
        )
        self.processors = add_exporters(self.provider, settings)
        self.scope = InstrumentationScope(
            "durabletask", ""
        )  # the tracer's: Zipkin refuses a null version
        self.tracer = self.provider.get_tracer("durabletask")
        self.api_tracer = self.provider.get_tracer("dapr-diagnostics")
        # (instance id, execution id) -> the workflow span's context, while it runs.
        self._own: dict[tuple[str, str], SpanContext | None] = {}
        # Instance id -> its create span, until the start returns.
        self._creating: dict[str, trace.Span] = {}
        # Instance id -> task id -> when the activity was scheduled (its span's start).
        self._scheduled: dict[str, dict[int, int]] = {}

    def shutdown(self) -> None:
        """Export what is queued (the SDK bounds the wait) and stop the export thread."""
        self.provider.shutdown()

    # -- the engine's hooks ----------------------------------------------------------------------

    def workflow_creating(self, started: pb.HistoryEvent, parent: pb.TraceContext | None) -> None:
        es = started.executionStarted
        instance_id = es.workflowInstance.instanceId
        span = self.tracer.start_span(
            _named("create_orchestration", es.name, es.version.value),
            context=parent_context(parse_traceparent(parent.traceParent) if parent else None),
            kind=SpanKind.CLIENT,
            attributes={
                "durabletask.type": "orchestration",
                "durabletask.task.name": es.name,
                "durabletask.task.instance_id": instance_id,
                **({"durabletask.task.version": es.version.value} if es.version.value else {}),
            },
            start_time=started.timestamp.ToNanoseconds(),
        )
        if not span.is_recording():
            return  # not sampled: no context, so nothing downstream is traced either
        context = span.get_span_context()
        self._creating[instance_id] = span
        es.parentTraceContext.traceParent = to_traceparent(context.trace_id, context.span_id)
        es.workflowSpanID.value = f"{random.getrandbits(64) or 1:016x}"

    def operation_done(self, operation: str, instance_id: str, began_ns: int, failed: bool) -> None:
        if operation != CREATE_WORKFLOW:
            return
        span = self._creating.pop(instance_id, None)
        if span is not None:
            if failed:
                span.set_status(Status(StatusCode.ERROR))
            span.end(now_ns())

    def turn_applying(self, inst: Instance, outcome: TurnOutcome, first_seq: int) -> None:
        own = self._own_context(inst)
        if own is None:
            return  # this workflow is not traced
        parent_of_work = to_traceparent(own.trace_id, own.span_id)
        now = now_ns()
        for event in outcome.events:
            kind = event.WhichOneof("eventType")
            if kind == "timerFired":
                self._timer_span(inst.instance_id, event, own, now)
            elif kind == "taskScheduled":
                event.taskScheduled.parentTraceContext.traceParent = parent_of_work
        scheduled = self._scheduled.setdefault(inst.instance_id, {})
        for request in outcome.activities:
            span_id = random.getrandbits(64) or 1
            request.parentTraceContext.traceParent = to_traceparent(own.trace_id, span_id)
            scheduled[request.taskId] = now
        for child in outcome.children:
            child_started = child.started.executionStarted
            child_started.parentTraceContext.traceParent = parent_of_work
            child_started.workflowSpanID.value = f"{random.getrandbits(64) or 1:016x}"
        if outcome.is_terminal:
            self._forget(inst)
            started = _execution_started(inst.history)
            name = STATUS_NAMES.get(outcome.status, str(outcome.status))
            if started is not None:
                self._orchestration_span(inst, started, own, name, now, outcome.failure)

    def continuing_as_new(self, inst: Instance, started: pb.HistoryEvent) -> None:
        # A generation that continues as new in its first turn has its start still in the inbox.
        old = _execution_started(inst.history) or _execution_started([e for _, e in inst.inbox])
        own = _started_context(old)
        self._forget(inst)
        if own is None or old is None:
            return
        self._orchestration_span(inst, old, own, "CONTINUED_AS_NEW", now_ns(), None)
        # The next generation's span has the same parent (durabletask-go's applier keeps the
        # start event's trace context) and an id of its own.
        es = started.executionStarted
        es.parentTraceContext.CopyFrom(old.executionStarted.parentTraceContext)
        es.workflowSpanID.value = f"{random.getrandbits(64) or 1:016x}"

    def activity_completed(
        self,
        inst: Instance,
        request: pb.ActivityRequest,
        response: pb.ActivityResponse,
        sent_ns: int,
    ) -> None:
        began = self._scheduled.get(inst.instance_id, {}).pop(request.taskId, sent_ns)
        mine = parse_traceparent(request.parentTraceContext.traceParent)
        own = self._own_context(inst) if mine is not None else None
        if mine is None or own is None:
            return
        self._emit(
            _named("activity", request.name, request.version.value),
            span_id=mine.span_id,
            parent=own,
            kind=SpanKind.SERVER,
            attributes={
                "durabletask.type": "activity",
                "durabletask.task.name": request.name,
                "durabletask.task.task_id": request.taskId,
                "durabletask.task.instance_id": inst.instance_id,
                **(
                    {"durabletask.task.version": request.version.value}
                    if request.version.value
                    else {}
                ),
            },
            start=began,
            end=now_ns(),
        )

    # -- spans -----------------------------------------------------------------------------------

    def _own_context(self, inst: Instance) -> SpanContext | None:
        """The workflow span's context (None: not traced), read from its ``executionStarted``
        once per generation."""
        key = (inst.instance_id, inst.execution_id)
        if key not in self._own:
            self._own[key] = _started_context(_execution_started(inst.history))
        return self._own[key]

    def _forget(self, inst: Instance) -> None:
        self._own.pop((inst.instance_id, inst.execution_id), None)
        self._scheduled.pop(inst.instance_id, None)

    def _emit(
        self,
        name: str,
        *,
        span_id: int | None,
        parent: SpanContext,
        kind: SpanKind,
        attributes: dict[str, Any],
        start: int,
        end: int,
        status: Status | None = None,
        events: Sequence[Event] = (),
    ) -> None:
        """Hand a finished span of a sampled workflow to the processors."""
        span = ReadableSpan(
            name,
            context=SpanContext(
                parent.trace_id,
                span_id if span_id is not None else random.getrandbits(64) or 1,
                is_remote=False,
                trace_flags=SAMPLED,
            ),
            parent=parent,
            resource=self.resource,
            attributes=attributes,
            events=events,
            kind=kind,
            status=status or UNSET,
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scope,
        )
        for processor in self.processors:
            processor.on_end(span)

    def _timer_span(
        self, instance_id: str, event: pb.HistoryEvent, own: SpanContext, now: int
    ) -> None:
        fired = event.timerFired
        fire_at = datetime.fromtimestamp(fired.fireAt.seconds, tz=UTC)
        self._emit(
            "timer",
            span_id=None,
            parent=own,
            kind=SpanKind.INTERNAL,
            attributes={
                "durabletask.type": "timer",
                # Go's time.RFC3339, which daprd formats it with: whole seconds, "Z".
                "durabletask.fire_at": fire_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "durabletask.task.task_id": fired.timerId,
                "durabletask.task.instance_id": instance_id,
            },
            start=event.timestamp.ToNanoseconds(),
            end=now,
        )

    def _orchestration_span(
        self,
        inst: Instance,
        started: pb.HistoryEvent,
        own: SpanContext,
        status_name: str,
        now: int,
        failure: pb.TaskFailureDetails | None,
    ) -> None:
        es = started.executionStarted
        parent = parse_traceparent(es.parentTraceContext.traceParent)
        events = []
        if status_name != "CONTINUED_AS_NEW":
            for event in inst.history:
                notable = NOTABLE_EVENTS.get(event.WhichOneof("eventType") or "")
                if notable is not None:
                    name, attributes = notable
                    events.append(Event(name, attributes(event), event.timestamp.ToNanoseconds()))
        if parent is None:
            return
        self._emit(
            _named("orchestration", es.name, es.version.value),
            span_id=own.span_id,
            parent=parent,
            kind=SpanKind.SERVER,
            attributes={
                "durabletask.type": "orchestration",
                "durabletask.task.name": es.name,
                "durabletask.task.instance_id": inst.instance_id,
                "durabletask.runtime_status": status_name,
                **({"durabletask.task.version": es.version.value} if es.version.value else {}),
            },
            start=(inst.history[0] if inst.history else started).timestamp.ToNanoseconds(),
            end=now,
            status=Status(StatusCode.ERROR, failure.errorMessage) if failure is not None else None,
            events=events,
        )

    # -- the API edge ----------------------------------------------------------------------------

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        """The API calls' spans (sidecar/tracing_api.py), on the same exporters."""
        return TraceInterceptor(self.api_tracer)


def _execution_started(history: list[pb.HistoryEvent]) -> pb.HistoryEvent | None:
    """The generation's ``executionStarted`` (second in a history, after the first turn's
    ``workflowStarted``)."""
    for event in history:
        if event.HasField("executionStarted"):
            return event
    return None


def _started_context(started: pb.HistoryEvent | None) -> SpanContext | None:
    """The orchestration span's context, from what ``executionStarted`` carries."""
    if started is None:
        return None
    es = started.executionStarted
    parent = parse_traceparent(es.parentTraceContext.traceParent)
    if parent is None or not es.workflowSpanID.value:
        return None
    try:
        span_id = int(es.workflowSpanID.value, 16)
    except ValueError:
        return None
    return SpanContext(parent.trace_id, span_id, is_remote=True, trace_flags=SAMPLED)
