"""The job queue (micro-batcher, publisher, listener) against a real ``redis-server``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer

from api.job_states import JobRef
from api.jobs import JobQueue
from api.messages import MessageFactory
from api.metrics import Metrics
from api.publisher import Admission, RedisTaskPublisher
from api.results import ResultListener
from api.workers import WorkerDirectory
from shared.errors import QueueFull
from shared.queue import make_celery, result_key_prefix
from shared.settings import Settings
from tests.conftest import RedisServer

T = TypeVar("T")
QUEUE = "jobs-test"  # no worker consumes it: tasks stay queued


def with_jobs(
    server: RedisServer,
    max_depth: int,
    scenario: Callable[[JobQueue], Awaitable[T]],
    tracer: Tracer | None = None,
) -> T:
    settings = Settings(redis_url=server.url, queue_name=QUEUE, batch_in_flight=1, batch_hold_ms=50)

    async def go() -> T:
        client = redis.asyncio.Redis.from_url(server.url)
        app = make_celery(settings)
        messages = MessageFactory(app, QUEUE, "test")
        publisher = RedisTaskPublisher(client, messages, Admission(max_depth, 60))
        listener = ResultListener(client, result_key_prefix(app))
        directory = WorkerDirectory(client, QUEUE)
        jobs = JobQueue(settings, publisher, listener, directory, Metrics(), tracer=tracer)
        try:
            return await asyncio.wait_for(scenario(jobs), 20)
        finally:
            await jobs.stop()
            messages.close()
            await client.aclose()

    return asyncio.run(go())


def test_while_a_task_is_in_flight_uploads_gather_into_one_task(
    private_redis: RedisServer,
) -> None:
    async def scenario(jobs: JobQueue) -> tuple[JobRef, list[JobRef]]:
        first = await jobs.submit(b"first")  # takes the only slot (BATCH_IN_FLIGHT=1)
        gathered = await asyncio.gather(jobs.submit(b"second"), jobs.submit(b"third"))
        return first, list(gathered)  # sent together when BATCH_HOLD_MS ran out

    first, gathered = with_jobs(private_redis, 100, scenario)
    assert {ref.task_id for ref in gathered} != {first.task_id}
    assert len({ref.task_id for ref in gathered}) == 1
    assert [ref.index for ref in gathered] == [0, 1]
    assert private_redis.client().llen(QUEUE) == 2  # two tasks, not three


def test_a_full_queue_refuses_the_upload_and_frees_its_slot(private_redis: RedisServer) -> None:
    async def scenario(jobs: JobQueue) -> int:
        await jobs.submit(b"first")  # the queue is now full (MAX_QUEUE_DEPTH=1)
        jobs.batcher.capacity = 2  # so the next upload goes at once, not after the hold
        with pytest.raises(QueueFull):
            await jobs.submit(b"second")
        return jobs.batcher.in_flight

    assert with_jobs(private_redis, 1, scenario) == 1  # only the first task holds a slot
    assert private_redis.client().llen(QUEUE) == 1


def queued_headers(server: RedisServer) -> list[dict[str, Any]]:
    """The headers of the queued messages, oldest first."""
    raw = server.client().lrange(QUEUE, 0, -1)
    return [json.loads(message)["headers"] for message in reversed(raw)]


def traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_a_traced_task_continues_its_request_and_links_the_requests_it_gathered(
    private_redis: RedisServer,
) -> None:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")

    async def upload(jobs: JobQueue, name: str) -> JobRef:
        # As FastAPI's span around a request, with baggage a client sent.
        token = context.attach(baggage.set_baggage("client", name))
        try:
            with tracer.start_as_current_span(name):
                return await jobs.submit(name.encode())
        finally:
            context.detach(token)

    async def scenario(jobs: JobQueue) -> None:
        await upload(jobs, "request-1")  # takes the only slot: the next two gather
        await asyncio.gather(upload(jobs, "request-2"), upload(jobs, "request-3"))

    with_jobs(private_redis, 100, scenario, tracer=provider.get_tracer("api.jobs"))
    spans = {span.name: span for span in exported.get_finished_spans()}
    publishes = [span for span in exported.get_finished_spans() if span.name.startswith("apply")]
    assert [span.name for span in publishes] == ["apply_async/mnist.predict"] * 2
    alone, gathered = publishes
    assert alone.kind is gathered.kind is SpanKind.PRODUCER
    # One parent each: the request that sent it; the gathered task links the other request.
    assert alone.parent == spans["request-1"].get_span_context()
    assert not alone.links
    assert alone.attributes is not None and alone.attributes["mnist.images"] == 1
    assert gathered.parent == spans["request-2"].get_span_context()
    assert [link.context for link in gathered.links] == [spans["request-3"].get_span_context()]
    assert gathered.attributes is not None and gathered.attributes["mnist.requests"] == 2
    # The worker continues each task's publish span: its context is in the message.
    headers = queued_headers(private_redis)
    assert [h["traceparent"] for h in headers] == [traceparent(alone), traceparent(gathered)]
    assert headers[1]["id"] == gathered.attributes["messaging.message.id"]
    assert not any("baggage" in h for h in headers)  # a client's baggage stays in the API


def test_untraced_tasks_carry_no_trace_headers(private_redis: RedisServer) -> None:
    async def scenario(jobs: JobQueue) -> None:
        with TracerProvider().get_tracer("test").start_as_current_span("request"):
            await jobs.submit(b"only")  # a current span, but this queue has no tracer

    with_jobs(private_redis, 100, scenario)
    (headers,) = queued_headers(private_redis)
    assert "traceparent" not in headers
    assert trace.get_current_span() is trace.INVALID_SPAN
