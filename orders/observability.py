"""The app's own tracing: its part of an order's trace, from the same Dapr Configuration file.

One order is one trace across three processes: the web's request span (``TracingMiddleware``)
is the parent of the workflow the engine creates, because the workflow client sends the W3C
``traceparent`` of the current span as gRPC metadata (``with_trace_context``), which daprd reads
and the embedded sidecar reads the same way; the engine's activity span travels to the worker
in the work item, where dapr.ext.workflow opens ``activity: <name>`` under it, and each activity
opens one more span around its service call and database work (``activity_span``).

``tracing_configure`` is called once per process by the entry points (ordersite/wsgi.py,
runworker): it reads ``settings.DAPR_CONFIG`` (samplingRate, zipkin or otel endpoint, as the
sidecar does) and installs OpenTelemetry's SDK as the process's tracer provider. Unconfigured,
the middleware and the decorator pass straight through and the client is left as the SDK built
it: no span objects, no cost. The service name is ``OTEL_SERVICE_NAME`` if set, else the Dapr
app id the CLI gives the process (``APP_ID``), else the one the entry point names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import grpc
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from sidecar.tracing_config import ConfigurationError, add_exporters, load_tracing

log = logging.getLogger("orders.observability")

_tracer: Any = None  # opentelemetry Tracer once tracing_configure enabled tracing here


def tracing_configure(*, service_name: str) -> bool:
    """Trace this process as the configuration says (once; later calls change nothing).
    Returns whether it is traced. A bad configuration file is logged, not fatal: the app
    works untraced."""
    global _tracer
    if _tracer is not None:
        return True
    try:
        tracing = load_tracing(settings.DAPR_CONFIG)
    except ConfigurationError as error:
        log.warning("tracing is off: %s", error)
        return False
    if tracing is None:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    name = os.environ.get("OTEL_SERVICE_NAME") or os.environ.get("APP_ID") or service_name
    provider = TracerProvider(
        resource=Resource.create({"service.name": name}),
        sampler=ParentBased(TraceIdRatioBased(tracing.sampling_rate)),
    )
    add_exporters(provider, tracing)
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("orders")
    log.info("tracing as %s, sampling rate %g", name, tracing.sampling_rate)
    return True


def tracing_enabled() -> bool:
    return _tracer is not None


# -- the web request --------------------------------------------------------------------------------


class TracingMiddleware:
    """A SERVER span per request, named ``<method> <route>`` as OpenTelemetry's HTTP semantic
    conventions name it, child of the caller's ``traceparent`` header if one came."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.static = "/" + settings.STATIC_URL.lstrip("/")  # stylesheets are not worth a trace

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _tracer is None or request.path.startswith(self.static):
            return self.get_response(request)
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier = {"traceparent": request.headers.get("traceparent", "")}
        parent = TraceContextTextMapPropagator().extract(carrier)
        with _tracer.start_as_current_span(
            request.method or "HTTP",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method or "", "url.path": request.path},
        ) as span:
            response = self.get_response(request)
            match = request.resolver_match
            if match is not None:
                route = "/" + match.route
                span.update_name(f"{request.method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response


# -- the workflow client ------------------------------------------------------------------------------


class TraceContextInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the current span's ``traceparent`` to each call's gRPC metadata: what daprd's gRPC
    tracing middleware reads (and the embedded sidecar likewise) to parent the workflow's trace."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier)
        if "traceparent" in carrier:
            metadata = [*(details.metadata or ()), ("traceparent", carrier["traceparent"])]
            details = details._replace(metadata=metadata)
        return continuation(details, request)


def with_trace_context(client: Any) -> Any:
    """``client`` (a ``DaprWorkflowClient``) sending the current trace context on every call,
    when this process is traced.

    dapr.ext.workflow takes no client interceptors (only ``WorkflowRuntime`` does), and sends
    no trace context itself unless opentelemetry-instrumentation-grpc is installed, which would
    instrument every gRPC channel of every process whether traced or not. So the interceptor
    goes on the SDK's own channel: its inner client's ``_channel``/``_stub`` (dapr 1.19; a
    test holds this to the trace it must produce).
    """
    if _tracer is None:
        return client
    from dapr.ext.workflow._durabletask.internal import orchestrator_service_pb2_grpc as stubs

    inner = getattr(client, "_DaprWorkflowClient__obj", None)
    channel = getattr(inner, "_channel", None)
    if channel is None:
        log.warning("this dapr.ext.workflow has no channel to trace: workflows start untraced")
        return client
    inner._stub = stubs.TaskHubSidecarServiceStub(
        grpc.intercept_channel(channel, TraceContextInterceptor())
    )
    return client


# -- activities ----------------------------------------------------------------------------------------


def activity_work(name: str, data: Any) -> AbstractContextManager[Any]:
    """A span around an activity's work (its service call and database queries), child of
    the SDK's ``activity: <name>`` span; nothing when this process is not traced."""
    if _tracer is None:
        return nullcontext()
    from django.db import connection

    order_id = data.get("order_id") if isinstance(data, dict) else None
    attributes = {"db.system": connection.vendor, **({"order.id": order_id} if order_id else {})}
    return _tracer.start_as_current_span(f"orders.{name}", attributes=attributes)  # type: ignore[no-any-return]
