"""Reading the tracing section of a Dapr Configuration file as daprd does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter

from sidecar.tests.harness import REPO_ROOT
from sidecar.tracing_config import (
    DEFAULT_SAMPLING_RATE,
    ConfigurationError,
    load_tracing,
    otlp_http_url,
    span_exporters,
)

HEAD = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n"


def config(tmp_path: Path, tracing: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(HEAD + "  tracing:\n" + tracing)
    return path


def test_the_projects_own_configuration_traces_everything_to_zipkin():
    settings = load_tracing(REPO_ROOT / "config" / "dapr-config.yaml")
    assert settings is not None
    assert settings.sampling_rate == 1.0
    assert settings.zipkin_endpoint == "http://localhost:9411/api/v2/spans"
    (exporter,) = span_exporters(settings)
    assert isinstance(exporter.inner, ZipkinExporter)


def test_otel_over_http_posts_to_v1_traces_and_over_grpc_dials_the_address(tmp_path):
    http = load_tracing(
        config(
            tmp_path,
            '    samplingRate: "0.5"\n    otel:\n      endpointAddress: "localhost:4318"\n      protocol: http\n',
        )
    )
    assert http is not None and http.sampling_rate == 0.5
    (exporter,) = span_exporters(http)
    assert isinstance(exporter.inner, HttpExporter)
    assert otlp_http_url("localhost:4318", secure=False) == "http://localhost:4318/v1/traces"
    assert otlp_http_url("collector:4318", secure=True) == "https://collector:4318/v1/traces"
    grpc = load_tracing(
        config(
            tmp_path,
            '    samplingRate: "1"\n    otel:\n      endpointAddress: "localhost:4317"\n      protocol: grpc\n      isSecure: false\n',
        )
    )
    assert grpc is not None and grpc.otel_protocol == "grpc" and not grpc.otel_secure
    (exporter,) = span_exporters(grpc)
    assert isinstance(exporter.inner, GrpcExporter)


def test_off_without_a_file_a_section_an_exporter_or_at_rate_zero(tmp_path):
    assert load_tracing(None) is None
    assert load_tracing(config(tmp_path, '    samplingRate: "1"\n')) is None
    zero = '    samplingRate: "0"\n    zipkin:\n      endpointAddress: "http://z/api/v2/spans"\n'
    assert load_tracing(config(tmp_path, zero)) is None
    plain = tmp_path / "plain.yaml"
    plain.write_text(HEAD + "  metric:\n    enabled: true\n")
    assert load_tracing(plain) is None


def test_a_rate_that_is_not_a_number_samples_as_rarely_as_daprd(tmp_path):
    odd = '    samplingRate: "often"\n    zipkin:\n      endpointAddress: "http://z/api/v2/spans"\n'
    settings = load_tracing(config(tmp_path, odd))
    assert settings is not None and settings.sampling_rate == DEFAULT_SAMPLING_RATE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Component\n", "is not a Dapr Configuration"),
        ("kind: [\n", "not valid YAML"),
        (
            HEAD + '  tracing:\n    otel:\n      endpointAddress: "x:1"\n      protocol: udp\n',
            "must be http or grpc",
        ),
    ],
)
def test_a_bad_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_tracing(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_tracing(tmp_path / "missing.yaml")


def test_the_command_line_refuses_a_bad_configuration_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: Component\n")
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "--db", ":memory:", "--grpc-port", "0",
         "--metrics-port", "off", "--config", str(path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "is not a Dapr Configuration" in result.stderr
    assert "Traceback" not in result.stderr
