"""The tracing section of a Dapr Configuration file, and the OpenTelemetry exporters it names.

daprd reads ``spec.tracing`` of the Configuration given with ``--config`` (dapr/dapr
pkg/config/configuration.go; pkg/runtime/runtime.go setupTracing):

- ``samplingRate``: a string, the probability a trace that starts here is sampled (a traced
  caller's decision is followed: ``ParentBased(TraceIDRatioBased(rate))``, pkg/diagnostics
  tracing_sampler.go). ``"0"`` turns tracing off; a value that is not a number counts as 1e-4.
- ``zipkin.endpointAddress``: Zipkin's span collector URL (``http://host:9411/api/v2/spans``).
- ``otel.endpointAddress`` with ``otel.protocol`` (``http`` or ``grpc``) and ``otel.isSecure``:
  an OTLP collector's ``host:port`` (HTTP posts to ``/v1/traces`` on it).

Nothing configured (no file, no tracing section, a rate of 0, or no exporter) means no tracing
at all: ``load_tracing`` returns None and nothing of OpenTelemetry's SDK is even imported. The
embedded sidecar and the app's own processes read the same file, so one file drives both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("sidecar.tracing")

# daprd's rate when samplingRate is not a number (pkg/diagnostics/utils/trace_utils.go).
DEFAULT_SAMPLING_RATE = 1e-4
OTEL_PROTOCOLS = ("http", "grpc")


class ConfigurationError(Exception):
    """The Configuration file cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class TracingSettings:
    sampling_rate: float
    zipkin_endpoint: str | None = None
    otel_endpoint: str | None = None
    otel_protocol: str = "http"
    otel_secure: bool = False

    @property
    def exports(self) -> bool:
        return bool(self.zipkin_endpoint or self.otel_endpoint)


def sampling_rate(value: Any) -> float:
    try:
        rate = float(str(value).strip())
    except ValueError:
        return DEFAULT_SAMPLING_RATE
    return min(max(rate, 0.0), 1.0)


def load_tracing(path: str | Path | None) -> TracingSettings | None:
    """The tracing settings of the Configuration file at ``path``; None when tracing is off."""
    if not path:
        return None
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the configuration {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"the configuration {path} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or document.get("kind") != "Configuration":
        raise ConfigurationError(f"{path} is not a Dapr Configuration (kind: Configuration)")
    tracing = (document.get("spec") or {}).get("tracing")
    if not isinstance(tracing, dict):
        return None
    zipkin = tracing.get("zipkin") or {}
    otel = tracing.get("otel") or {}
    protocol = str(otel.get("protocol") or "")
    otel_endpoint = str(otel.get("endpointAddress") or "") or None
    if otel_endpoint and protocol not in OTEL_PROTOCOLS:
        # daprd refuses to start: "invalid protocol ... provided for Otel endpoint".
        raise ConfigurationError(
            f"{path}: otel.protocol must be http or grpc, not {protocol or 'empty'!r}"
        )
    settings = TracingSettings(
        sampling_rate=sampling_rate(tracing.get("samplingRate", "")),
        zipkin_endpoint=str(zipkin.get("endpointAddress") or "") or None,
        otel_endpoint=otel_endpoint,
        otel_protocol=protocol or "http",
        otel_secure=str(otel.get("isSecure", False)).lower() == "true",
    )
    if settings.sampling_rate == 0 or not settings.exports:
        return None
    return settings


def otlp_http_url(endpoint: str, secure: bool) -> str:
    """daprd gives otlptracehttp a ``host:port``; the exporter posts to ``/v1/traces`` there."""
    if "://" not in endpoint:
        endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    scheme, _, rest = endpoint.partition("://")
    return endpoint if "/" in rest else f"{scheme}://{rest}/v1/traces"


def span_exporters(settings: TracingSettings) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    if settings.zipkin_endpoint:
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        exporters.append(ZipkinExporter(endpoint=settings.zipkin_endpoint))
    if settings.otel_endpoint and settings.otel_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporters.append(
            OTLPSpanExporter(endpoint=settings.otel_endpoint, insecure=not settings.otel_secure)
        )
    elif settings.otel_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as OTLPHttpSpanExporter,
        )

        exporters.append(
            OTLPHttpSpanExporter(
                endpoint=otlp_http_url(settings.otel_endpoint, settings.otel_secure)
            )
        )
    return [QuietExporter(exporter) for exporter in exporters]


def add_exporters(provider: Any, settings: TracingSettings) -> list[Any]:
    """Batch each exporter's spans on the SDK's own export thread (BatchSpanProcessor): the
    code that ends a span only appends it to a queue. Returns the processors added."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    processors = [BatchSpanProcessor(exporter) for exporter in span_exporters(settings)]
    for processor in processors:
        provider.add_span_processor(processor)
    return processors


class QuietExporter:
    """An exporter that logs one line when its collector goes away and one when it is back,
    instead of the SDK's traceback for every batch (a Zipkin that is not running is the
    common case under ``make run``)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failing = False

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.inner.export(spans)
        except Exception as exc:  # the collector is down or refuses: spans are dropped
            result = SpanExportResult.FAILURE
            if not self.failing:
                log.warning("trace export to %s failed, spans dropped: %s", self._target(), exc)
            self.failing = True
            return result
        if self.failing and result == SpanExportResult.SUCCESS:
            log.info("trace export to %s works again", self._target())
            self.failing = False
        return result

    def _target(self) -> str:
        return str(getattr(self.inner, "endpoint", None) or type(self.inner).__name__)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))
