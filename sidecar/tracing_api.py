"""The W3C trace context on the wire, and the span of a traced API call.

``traceparent`` (W3C Trace Context, version 00) is how a caller's span travels: in gRPC
metadata to daprd's API (and here), and in the durabletask messages' ``TraceContext``.
``TraceInterceptor`` makes the API call's span as daprd's gRPC tracing middleware does
(dapr/dapr pkg/diagnostics/grpc_tracing.go) and hands its context to the engine through
``engine.observers.API_CALL_TRACE``, so a workflow started by the call is its child.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from dapr.ext.workflow._durabletask.internal import protos as pb
from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from sidecar.engine.observers import API_CALL_TRACE

START_INSTANCE = "/TaskHubSidecarService/StartInstance"


def to_traceparent(trace_id: int, span_id: int, flags: int = TraceFlags.SAMPLED) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def parse_traceparent(value: str) -> SpanContext | None:
    """A W3C ``traceparent`` (version 00) as a remote span context; None if it is not one."""
    parts = value.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags & 1))


def parent_context(context: SpanContext | None) -> Any:
    """An OpenTelemetry Context whose current span is ``context`` (None: a root span)."""
    if context is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(context))


class TraceInterceptor(grpc.aio.ServerInterceptor):
    """A span per API call that belongs to a trace (its gRPC metadata carries ``traceparent``),
    and for every StartInstance, which begins a workflow's trace: daprd's gRPC tracing
    middleware (pkg/diagnostics/grpc_tracing.go) names it after the method, kind CLIENT, with
    ``dapr.api`` and ``dapr.protocol``. daprd also makes a root trace of every other call (a
    worker's completions, status reads); those describe no workflow and are left out here."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        incoming = ""
        for key, value in details.invocation_metadata or ():
            if key == "traceparent":
                incoming = value if isinstance(value, str) else value.decode()
        method = details.method
        if not incoming and method != START_INSTANCE:
            return handler
        behavior = handler.unary_unary
        tracer = self.tracer

        async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
            span = tracer.start_span(
                method, context=parent_context(parse_traceparent(incoming)), kind=SpanKind.CLIENT
            )
            own = span.get_span_context()
            token = API_CALL_TRACE.set(
                pb.TraceContext(
                    traceParent=to_traceparent(own.trace_id, own.span_id, own.trace_flags)
                )
            )
            try:
                return await behavior(request, context)
            except BaseException:
                span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                API_CALL_TRACE.reset(token)
                span.set_attributes({"dapr.api": method, "dapr.protocol": "grpc"})
                span.end()

        return grpc.unary_unary_rpc_method_handler(
            traced, handler.request_deserializer, handler.response_serializer
        )
