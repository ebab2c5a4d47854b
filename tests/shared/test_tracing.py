"""Tracing configured by the OTEL_* variables alone, and trace ids in the JSON log lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider

from shared.logs import JsonFormatter
from shared.tracing import Tracing, TracingConfigError, exporter_names

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("value", [None, "", "none", " none "])
def test_tracing_is_off_unless_an_exporter_is_named(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    tracing = Tracing("mnist-api")
    assert tracing.provider is None
    assert not tracing.enabled
    tracing.start()  # nothing to start or stop
    tracing.shutdown()


def test_otel_sdk_disabled_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not Tracing("mnist-api").enabled


@pytest.mark.parametrize(
    ("exporters", "protocol", "names"),
    [
        ("console", None, ["console"]),
        ("otlp", None, ["otlp_proto_http"]),  # the specification's default protocol
        ("otlp", "http/protobuf", ["otlp_proto_http"]),
        ("otlp", "grpc", ["otlp_proto_grpc"]),
        ("console, otlp", None, ["console", "otlp_proto_http"]),
    ],
)
def test_exporter_names_follow_the_specification(
    monkeypatch: pytest.MonkeyPatch, exporters: str, protocol: str | None, names: list[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporters)
    if protocol is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    assert exporter_names() == names


def test_the_traces_protocol_overrides_the_general_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    assert exporter_names() == ["otlp_proto_http"]


@pytest.mark.parametrize(
    ("exporters", "protocol", "message"),
    [
        ("zipkin", None, "zipkin, which is not installed"),
        ("otlp", "grpc", "otlp_proto_grpc, which is not installed"),  # we ship http only
        ("otlp", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"),
    ],
)
def test_a_typo_or_a_missing_exporter_fails_at_start(
    monkeypatch: pytest.MonkeyPatch, exporters: str, protocol: str | None, message: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporters)
    if protocol is not None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    with pytest.raises(TracingConfigError, match=message):
        Tracing("mnist-api")


def test_the_service_name_is_ours_unless_the_environment_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = Tracing("mnist-api").provider
    assert provider is not None
    assert provider.resource.attributes[SERVICE_NAME] == "mnist-api"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "digits-eu")
    provider = Tracing("mnist-api").provider
    assert provider is not None
    assert provider.resource.attributes[SERVICE_NAME] == "digits-eu"


CONSOLE_PROGRAM = """
from shared.tracing import Tracing
tracing = Tracing("mnist-worker")
tracing.start()
with tracing.provider.get_tracer("test").start_as_current_span("predict"):
    pass
tracing.shutdown()
"""


def test_console_prints_each_span_on_stdout_as_json() -> None:
    # A process of its own: the SDK's console exporter holds the sys.stdout of its import.
    environment = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    environment["OTEL_TRACES_EXPORTER"] = "console"
    done = subprocess.run(
        [sys.executable, "-c", CONSOLE_PROGRAM],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed = json.loads(done.stdout)
    assert printed["name"] == "predict"
    assert printed["resource"]["attributes"][SERVICE_NAME] == "mnist-worker"


def _log_line() -> dict[str, object]:
    record = logging.LogRecord("worker.tasks", logging.INFO, __file__, 1, "task done", None, None)
    entry: dict[str, object] = json.loads(JsonFormatter("worker").format(record))
    return entry


def test_log_lines_carry_the_current_span_ids_and_none_outside_a_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    assert "trace_id" not in _log_line()
    assert "span_id" not in _log_line()
    with tracer.start_as_current_span("run/mnist.predict") as span:
        line = _log_line()
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
