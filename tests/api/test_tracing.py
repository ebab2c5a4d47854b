"""The API's spans in one process (embedded mode): FastAPI's HTTP span with our publish
span inside it, and the access log line naming the HTTP span. Across real processes:
``tests/integration/test_tracing_live.py``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from api.main import create_app
from shared.logs import JsonFormatter
from shared.settings import Settings
from shared.tracing import Tracing
from tests.images import png


class JsonLines(logging.Handler):
    """The access log's lines as the JSON formatter writes them, formatted as they are
    logged (inside the request's span), as the API's stderr handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter("api"))
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def access_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    logger = logging.getLogger("api.access")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_a_traced_request_holds_its_publish_span_and_logs_its_ids(
    embedded_settings: Settings, digits: list[np.ndarray], access_lines: JsonLines
) -> None:
    exported = InMemorySpanExporter()
    app = create_app(embedded_settings, tracing=Tracing("mnist-api", exporters=[exported]))
    with TestClient(app) as client:
        answer = client.post("/predict/mnist", files={"file": ("7.png", png(digits[7]))})
    assert answer.status_code == 200, answer.text
    spans = exported.get_finished_spans()  # all of them: the app's shutdown flushed them
    [http] = [span for span in spans if span.kind is SpanKind.SERVER]
    assert http.name == "POST /predict/mnist"
    assert http.resource.attributes["service.name"] == "mnist-api"
    [publish] = [span for span in spans if span.name == "apply_async/mnist.predict"]
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    ancestor = publish.parent
    while ancestor is not None and ancestor.span_id != http.context.span_id:
        ancestor = by_id[ancestor.span_id].parent
    assert ancestor is not None, "the publish span is not inside the HTTP span"
    [line] = [line for line in access_lines.lines if line["msg"] == "request"]
    assert line["trace_id"] == f"{http.context.trace_id:032x}"
    assert line["span_id"] == f"{http.context.span_id:016x}"


def test_untraced_requests_log_no_trace_ids(
    embedded_settings: Settings,
    digits: list[np.ndarray],
    access_lines: JsonLines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    tracing = Tracing("mnist-api")
    assert not tracing.enabled
    with TestClient(create_app(embedded_settings, tracing=tracing)) as client:
        answer = client.post("/predict/mnist", files={"file": ("7.png", png(digits[7]))})
    assert answer.status_code == 200
    [line] = [line for line in access_lines.lines if line["msg"] == "request"]
    assert "trace_id" not in line
    assert line["request_id"]
