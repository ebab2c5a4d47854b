"""Jobs: sending uploads as ``mnist.predict`` tasks, and waiting for their answers.

Each upload becomes a *job* with its own unguessable id. Uploads go through a micro-batcher
(``api/batcher.py``) that keeps the workers busy without flooding the queue: while fewer
tasks than twice the workers' processes are in flight, an upload is sent at once; beyond
that, uploads gather into one task until a task finishes. A gathered upload waits at most
``BATCH_WINDOW_MS`` if async (its 202 must be quick) or ``BATCH_HOLD_MS`` if sync.

Tracing (only when ``shared.tracing`` has a tracer for us): each upload remembers the span
it came from, and sending a task is an ``apply_async/mnist.predict`` span, the name and
kind Celery's OpenTelemetry instrumentation gives a publish, whose context goes into the
task's headers for the worker to continue. A task carrying several requests' uploads is
the child of the first request's span and links to the others'.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Tracer
from redis.exceptions import RedisError

from api.batcher import Batcher
from api.errors import JobTimeout
from api.job_states import JobRef, outcome
from api.metrics import Metrics
from api.publisher import TaskPublisher
from api.results import ResultListener
from api.workers import WorkerDirectory
from shared.errors import (
    BrokerUnavailable,
    PredictionFailed,
    ServiceError,
    ServiceUnavailable,
    error_from_code,
)
from shared.logs import request_id_var
from shared.schemas import TASK_PREDICT, ItemError
from shared.settings import Settings

CAPACITY_REFRESH_SECONDS = 2.0


@dataclass(frozen=True)
class Upload:
    image: bytes
    request_id: str | None
    want_input: bool  # the answer also carries the 28x28 image the model saw
    span: SpanContext | None = None  # the request's span, with tracing on


class JobQueue:
    """The API's door to the queue: submit uploads, wait for their answers."""

    def __init__(
        self,
        settings: Settings,
        publisher: TaskPublisher,
        listener: ResultListener,
        workers: WorkerDirectory,
        metrics: Metrics,
        *,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.tracer = tracer
        self.publisher = publisher
        self.listener = listener
        self.workers = workers
        self.metrics = metrics
        self.batcher: Batcher[Upload, JobRef] = Batcher(
            self._send, max_size=settings.batch_max_size, capacity=settings.batch_in_flight or 2
        )
        self._background: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if not self.settings.batch_in_flight:
            self._spawn(self._follow_capacity())

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.batcher.close(ServiceUnavailable("The API is shutting down."))

    async def _follow_capacity(self) -> None:
        """Keep the batcher's capacity at twice the live workers' processes: one task
        running and one waiting for each, so no worker idles between tasks."""
        while True:
            with contextlib.suppress(ServiceError):  # Redis is away: keep the last value
                self.batcher.capacity = max(2, 2 * await self.workers.processes())
            await asyncio.sleep(CAPACITY_REFRESH_SECONDS)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._background.discard)

    # --- submitting ----------------------------------------------------------------------

    async def submit(self, image: bytes, want_input: bool = False, urgent: bool = False) -> JobRef:
        """Queue one upload; returns once its task is safely in Redis.

        ``urgent``: the caller answers as soon as the job is queued (async), so it waits
        only the short window.
        """
        wait_ms = self.settings.batch_window_ms if urgent else self.settings.batch_hold_ms
        upload = Upload(image, request_id_var.get(), want_input, self._current_span())
        return await self.batcher.submit(upload, wait_ms / 1000)

    async def submit_many(self, images: list[bytes], want_input: bool = False) -> list[JobRef]:
        """Queue several uploads as one task (a batch request): one vectorised prediction."""
        request_id, span = request_id_var.get(), self._current_span()
        return await self.batcher.submit_batch(
            [Upload(image, request_id, want_input, span) for image in images]
        )

    def _current_span(self) -> SpanContext | None:
        return trace.get_current_span().get_span_context() if self.tracer is not None else None

    async def _send(self, uploads: list[Upload]) -> list[JobRef]:
        task_id = str(uuid.uuid4())
        refs = [JobRef(str(uuid.uuid4()), task_id, index) for index in range(len(uploads))]
        request_ids = sorted({u.request_id for u in uploads if u.request_id})
        kwargs = {
            "images": [base64.b64encode(u.image).decode("ascii") for u in uploads],
            "request_ids": request_ids,
            "enqueued_at": time.time(),
            "return_inputs": [i for i, u in enumerate(uploads) if u.want_input],
        }
        summary = f"{{'images': <{len(uploads)} images>, 'request_ids': {request_ids}}}"
        # Expected before it is sent, so its result cannot slip past the listener.
        self.listener.expect(task_id)
        try:
            with self._publish_span(task_id, uploads) as headers:
                await self.publisher.enqueue(
                    task_id, {ref.job_id: ref.record for ref in refs}, kwargs, summary, headers
                )
        except BaseException as exc:  # cancelled or failed: nobody will wait for it
            self.listener.forget(task_id)
            if isinstance(exc, ServiceError):
                self.metrics.rejected.labels(exc.code).inc(len(uploads))
            raise
        self.metrics.batch_size.observe(len(uploads))
        # The task holds its batcher slot until its result arrives (or the wait gives up).
        self._spawn(self._track(task_id, len(uploads)))
        return refs

    @contextlib.contextmanager
    def _publish_span(self, task_id: str, uploads: list[Upload]) -> Iterator[dict[str, str]]:
        """The task's trace headers (none with tracing off), inside its publish span."""
        if self.tracer is None:
            yield {}
            return
        # One per request (a batch request's uploads share theirs), in order.
        by_id = {(u.span.trace_id, u.span.span_id): u.span for u in uploads if u.span}
        spans = [span for span in by_id.values() if span.is_valid]
        # From an empty context, never the current one: this runs in a task the batcher
        # started from whichever request flushed it, whose span and baggage are not ours.
        parent = Context()
        if spans:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(spans[0]), parent)
        with self.tracer.start_as_current_span(
            f"apply_async/{TASK_PREDICT}",
            context=parent,
            kind=SpanKind.PRODUCER,
            links=[Link(span) for span in spans[1:]],
            attributes={
                "celery.action": "apply_async",
                "celery.task_name": TASK_PREDICT,
                "messaging.message.id": task_id,
                "messaging.destination": self.settings.queue_name,
                "mnist.images": len(uploads),
                "mnist.requests": max(1, len(spans)),
            },
        ) as span:
            headers: dict[str, str] = {}
            # The span alone: the current context may still hold the flushing request's.
            propagate.inject(headers, context=trace.set_span_in_context(span, Context()))
            yield headers

    async def _track(self, task_id: str, images: int) -> None:
        sent = time.perf_counter()
        try:
            meta = await self.listener.wait(task_id, self.settings.sync_timeout_seconds)
        except (RedisError, OSError):
            meta = None
        finally:
            self.listener.forget(task_id)  # releases the hold taken by expect()
            self.batcher.release()
        if meta is not None:
            self.metrics.observe_task(meta, time.perf_counter() - sent, images)

    # --- answers -------------------------------------------------------------------------

    async def wait(self, ref: JobRef, timeout: float) -> dict[str, Any]:
        """The job's answer (a ``PredictionResponse`` body); raises its error, or
        ``JobTimeout`` if it is not done within ``timeout`` seconds (the job goes on)."""
        (answer,) = await self.wait_all([ref], timeout)
        if isinstance(answer, ServiceError):
            raise answer
        return answer

    async def wait_all(
        self, refs: list[JobRef], timeout: float
    ) -> list[dict[str, Any] | ServiceError]:
        """Each job's answer or error, in order, waiting once per task (concurrently), so
        all of them are answered within about ``timeout`` seconds."""
        task_ids = list(dict.fromkeys(ref.task_id for ref in refs))
        try:
            if len(task_ids) == 1:  # every sync request: no gather (a task more) needed
                metas = [await self.listener.wait(task_ids[0], timeout)]
            else:
                metas = await asyncio.gather(
                    *(self.listener.wait(task_id, timeout) for task_id in task_ids)
                )
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        by_task = dict(zip(task_ids, metas, strict=True))
        answers: list[dict[str, Any] | ServiceError] = []
        for ref in refs:
            meta = by_task[ref.task_id]
            if meta is None:
                answers.append(JobTimeout(ref.job_id))
                continue
            _, answer, error = outcome(ref, meta)
            if answer is not None:
                answers.append(answer)
            else:
                error = error or ItemError(code=PredictionFailed.code, detail="The job failed.")
                answers.append(error_from_code(error.code, error.detail))
        return answers
