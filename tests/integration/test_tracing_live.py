"""One trace per request across real processes: uvicorn and a prefork Celery worker export
their spans over OTLP/HTTP to a receiver in this test, configured by OTEL_* alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.procs import free_port, wait_until
from tests.images import png
from tests.integration.conftest import Stack, predict

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Received:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    links: tuple[str, ...]


class Collector:
    """The OTLP/HTTP traces endpoint (protobuf), as a collector serves it on /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.paths: set[str] = set()
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.receive(self.path, ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, path: str, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            self.paths.add(path)
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            Received(
                                service=attributes["service.name"],
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                kind=span.kind,
                                links=tuple(link.span_id.hex() for link in span.links),
                            )
                        )

    def trace(self, trace_id: str) -> list[Received]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.close()


def _json_lines(text: str) -> list[dict[str, object]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_request_is_one_trace_from_the_api_through_the_queue_into_the_worker(
    stack: Stack, digits: list[np.ndarray], collector: Collector
) -> None:
    tracing = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s, not the default 5 s
    }
    # Prefork: the worker's tracing starts in its pool process, after the fork.
    worker = stack.worker("traced", concurrency=1, **tracing)
    api, base = stack.api(**tracing)
    assert predict(base, png(digits[7]), request_id="trace-me")["prediction"] == "7"

    def access_lines() -> list[dict[str, object]]:
        return [
            entry
            for entry in _json_lines(api.log())
            if entry.get("msg") == "request" and entry.get("request_id") == "trace-me"
        ]

    # Written as the response ends, so it may follow the answer by a moment.
    wait_until(lambda: bool(access_lines()), 10, "the request's access log line")
    [line] = access_lines()
    trace_id = str(line["trace_id"])
    expected = {"apply_async/mnist.predict", "queue wait", "run/mnist.predict", "decode"}
    expected |= {"normalise", "predict"}
    server_kind, producer_kind, consumer_kind = 2, 4, 5  # OTLP's SpanKind values

    def whole_trace() -> bool:  # the HTTP span ends (and is sent) last
        spans = collector.trace(trace_id)
        names = {span.name for span in spans}
        return expected <= names and any(span.kind == server_kind for span in spans)

    wait_until(whole_trace, 30, "both sides' spans of the request's trace")
    spans = collector.trace(trace_id)
    assert collector.paths == {"/v1/traces"}
    by_name = {span.name: span for span in spans}

    [http] = [s for s in spans if s.kind == server_kind]
    assert http.service == "mnist-api"
    assert "/predict/mnist" in http.name
    assert http.span_id == line["span_id"]  # the access log line is the HTTP span's

    publish = by_name["apply_async/mnist.predict"]
    assert (publish.service, publish.kind) == ("mnist-api", producer_kind)
    parents = {span.span_id: span.parent_id for span in spans}
    ancestor = publish.parent_id
    while ancestor and ancestor != http.span_id:
        ancestor = parents.get(ancestor, "")
    assert ancestor == http.span_id, "the publish span is not inside the HTTP span"

    run = by_name["run/mnist.predict"]
    assert (run.service, run.kind) == ("mnist-worker", consumer_kind)
    assert run.parent_id == publish.span_id  # continued from the task's headers
    assert by_name["queue wait"].parent_id == publish.span_id
    for stage in ("decode", "normalise", "predict"):
        assert by_name[stage].service == "mnist-worker"
        assert by_name[stage].parent_id == run.span_id

    # The worker's log line for the task names the same trace and the task's span.
    def task_lines() -> list[dict[str, object]]:
        return [
            entry
            for entry in _json_lines(worker.log())
            if entry.get("msg") == "task done" and "trace-me" in str(entry.get("request_ids"))
        ]

    wait_until(lambda: bool(task_lines()), 10, "the task's log line")
    [done] = task_lines()
    assert (done["trace_id"], done["span_id"]) == (trace_id, run.span_id)
