"""Jobs: enqueueing uploads as ``mnist.predict`` tasks, waiting for them, reporting on them.

Each upload becomes a *job* with its own unguessable id. Jobs are grouped into tasks by
an adaptive micro-batcher that keeps the workers busy without flooding the queue: while
fewer tasks than the workers can take are in flight (twice their processes), a job is
sent at once, so a lone request waits for nothing. Beyond that, jobs gather and go as one
task (up to ``BATCH_MAX_SIZE``) as soon as a task finishes, so the batch grows with the
load and the worker predicts it in one vectorised call. A gathered job waits at most
``BATCH_WINDOW_MS`` if it is async (its 202 must be quick) or ``BATCH_HOLD_MS`` if sync.
A job record ``mnist:job:<id> -> <task id>:<index>`` is written before the task is sent:
it is how ``GET /jobs/{id}`` tells a queued job from an id never issued.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.metrics import Metrics
from api.publisher import TaskPublisher
from api.results import ResultListener, parse_meta
from shared.errors import (
    BrokerUnavailable,
    JobNotFound,
    PredictionFailed,
    PredictionTimeout,
    ServiceError,
    error_from_code,
)
from shared.logs import request_id_var
from shared.queue import (
    ATTEMPTS_KEY_PREFIX,
    JOB_KEY_PREFIX,
    RESULT_KEY_PREFIX,
    WORKER_KEY_PREFIX,
)
from shared.schemas import ItemError, JobState, JobStatus, PredictionResponse
from shared.settings import Settings

CELERY_STATES = {
    "PENDING": JobState.queued,
    "RECEIVED": JobState.queued,
    "RETRY": JobState.queued,
    "STARTED": JobState.running,
    "SUCCESS": JobState.succeeded,
    "FAILURE": JobState.failed,
    "REVOKED": JobState.failed,
}

FAILURE_DETAILS = {
    "TimeLimitExceeded": "The job ran past its time limit on the worker.",
    "WorkerLostError": "The worker running the job died.",
}


@dataclass(frozen=True)
class JobRef:
    job_id: str
    task_id: str
    index: int


CAPACITY_REFRESH_SECONDS = 2.0


@dataclass
class _Pending:
    image: bytes
    request_id: str | None
    want_input: bool
    urgent: bool  # async: queued within the short window, whatever the load
    ref: asyncio.Future[JobRef]


@dataclass
class _Batch:
    items: list[_Pending] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    deadline: float = float("inf")  # loop time at which the timer fires


def task_failure(meta: dict[str, Any]) -> ItemError:
    """A client-safe description of a failed task (never its traceback)."""
    result = meta.get("result")
    exc_type = result.get("exc_type") if isinstance(result, dict) else None
    detail = FAILURE_DETAILS.get(str(exc_type), "The job failed on the worker.")
    return ItemError(code=PredictionFailed.code, detail=detail)


def outcome(
    ref: JobRef, meta: dict[str, Any]
) -> tuple[JobState, dict[str, Any] | None, ItemError | None]:
    """A job's state, answer body and error, from its task's stored state.

    The answer is built as a plain dict: the worker made it from the shared schemas, and
    this is the hot path of every sync request.
    """
    state = CELERY_STATES.get(str(meta.get("status")), JobState.queued)
    if state is JobState.failed:
        return state, None, task_failure(meta)
    if state is not JobState.succeeded:
        return state, None, None
    result = meta.get("result") or {}
    try:
        item = result["items"][ref.index]
    except (KeyError, IndexError, TypeError):
        error = ItemError(code=PredictionFailed.code, detail="The worker's answer was malformed.")
        return JobState.failed, None, error
    if item.get("error"):
        return JobState.failed, None, ItemError(**item["error"])
    answer = {key: value for key, value in item["prediction"].items() if value is not None}
    answer["job_id"] = ref.job_id
    answer["model_version"] = result.get("model_version", "unknown")
    answer["worker"] = result.get("worker", "unknown")
    return JobState.succeeded, answer, None


class JobQueue:
    """The API's only door to the queue."""

    def __init__(
        self,
        settings: Settings,
        publisher: TaskPublisher,
        redis: Redis,
        listener: ResultListener,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.redis = redis
        self.listener = listener
        self.metrics = metrics
        self._batch = _Batch()
        self._in_flight = 0
        self.capacity = settings.batch_in_flight or 2
        self._background: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if not self.settings.batch_in_flight:
            self._spawn(self._follow_capacity())

    async def _follow_capacity(self) -> None:
        """Keep ``capacity`` at twice the live workers' processes: one task running and
        one waiting for each, so no worker idles between tasks."""
        while True:
            try:
                workers = await self.workers()
                processes = sum(int(w.get("concurrency") or 1) for w in workers)
                self.capacity = max(2, 2 * processes)
            except ServiceError:
                pass  # Redis is away; keep the last value
            await asyncio.sleep(CAPACITY_REFRESH_SECONDS)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._background.discard)

    # --- submitting ----------------------------------------------------------------------

    async def submit(self, image: bytes, want_input: bool = False, urgent: bool = False) -> JobRef:
        """Queue one upload; returns once its task is safely in Redis.

        ``want_input``: the answer also carries the 28x28 image the model saw. ``urgent``:
        the caller answers as soon as the job is queued (async), so it is not held back.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(image, request_id_var.get(), want_input, urgent, loop.create_future())
        batch = self._batch
        batch.items.append(pending)
        if len(batch.items) >= self.settings.batch_max_size or self._in_flight < self.capacity:
            self._flush()
        else:
            wait_ms = self.settings.batch_window_ms if urgent else self.settings.batch_hold_ms
            deadline = loop.time() + wait_ms / 1000
            if deadline < batch.deadline:
                if batch.timer is not None:
                    batch.timer.cancel()
                batch.timer = loop.call_at(deadline, self._flush)
                batch.deadline = deadline
        return await pending.ref

    async def submit_many(self, images: list[bytes], want_input: bool = False) -> list[JobRef]:
        """Queue several uploads as one task (a batch request): one vectorised prediction."""
        loop = asyncio.get_running_loop()
        request_id = request_id_var.get()
        items = [
            _Pending(image, request_id, want_input, True, loop.create_future()) for image in images
        ]
        self._in_flight += 1
        await self._send(items)
        return [await item.ref for item in items]

    def _flush(self) -> None:
        batch, self._batch = self._batch, _Batch()
        if batch.timer is not None:
            batch.timer.cancel()
        if batch.items:
            self._in_flight += 1
            self._spawn(self._send(batch.items))

    def _task_done(self) -> None:
        self._in_flight -= 1
        if self._batch.items and self._in_flight < self.capacity:
            self._flush()  # a worker is free: the gathered jobs go now, as one task

    async def _send(self, items: list[_Pending]) -> None:
        task_id = str(uuid.uuid4())
        refs = [JobRef(str(uuid.uuid4()), task_id, index) for index in range(len(items))]
        request_ids = sorted({item.request_id for item in items if item.request_id})
        kwargs = {
            "images": [base64.b64encode(item.image).decode("ascii") for item in items],
            "request_ids": request_ids,
            "enqueued_at": time.time(),
            "return_inputs": [i for i, item in enumerate(items) if item.want_input],
        }
        summary = f"{{'images': <{len(items)} images>, 'request_ids': {request_ids}}}"
        # Expected before it is sent, so its result cannot slip past the listener.
        self.listener.expect(task_id)
        try:
            await self.publisher.enqueue(
                task_id, {ref.job_id: f"{task_id}:{ref.index}" for ref in refs}, kwargs, summary
            )
        except ServiceError as exc:
            self.listener.forget(task_id)
            self.metrics.rejected.labels(exc.code).inc(len(items))
            self._task_done()
            for item in items:
                if not item.ref.done():
                    item.ref.set_exception(exc)
            return
        for item, ref in zip(items, refs, strict=True):
            if not item.ref.done():
                item.ref.set_result(ref)
        self.metrics.batch_size.observe(len(items))
        # The task counts as in flight until its result arrives (or the wait gives up).
        self._spawn(self._track(task_id, len(items)))

    async def _track(self, task_id: str, images: int) -> None:
        sent = time.perf_counter()
        try:
            meta = await self.listener.wait(task_id, self.settings.sync_timeout_seconds)
        except (RedisError, OSError):
            meta = None
        finally:
            self.listener.forget(task_id)  # releases the hold taken by expect()
            self._task_done()
        if meta is not None:
            self.metrics.observe_task(meta, time.perf_counter() - sent, images)

    # --- answers -------------------------------------------------------------------------

    async def wait(self, ref: JobRef, timeout: float) -> dict[str, Any]:
        """The job's answer (a ``PredictionResponse`` body); raises its error, or
        ``PredictionTimeout`` past ``timeout``."""
        try:
            meta = await self.listener.wait(ref.task_id, timeout)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        if meta is None:
            raise PredictionTimeout()
        _, answer, error = outcome(ref, meta)
        if answer is not None:
            return answer
        error = error or ItemError(code=PredictionFailed.code, detail="The job failed.")
        raise error_from_code(error.code, error.detail)

    async def status(self, job_id: str) -> JobStatus:
        try:
            record = await self.redis.get(JOB_KEY_PREFIX + job_id)
            if record is None:
                raise JobNotFound()
            text = record.decode() if isinstance(record, bytes) else record
            task_id, _, index = text.rpartition(":")
            ref = JobRef(job_id, task_id, int(index))
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(RESULT_KEY_PREFIX + task_id)
                pipe.exists(ATTEMPTS_KEY_PREFIX + task_id)
                raw_meta, started = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        meta = parse_meta(raw_meta)
        if meta is None:
            # No result yet: a worker that took the task has counted its delivery.
            state = JobState.running if started else JobState.queued
            return JobStatus(job_id=job_id, status=state)
        state, answer, error = outcome(ref, meta)
        result = PredictionResponse.model_validate(answer) if answer is not None else None
        return JobStatus(job_id=job_id, status=state, result=result, error=error)

    async def queue_depth(self) -> int:
        try:
            return int(await self.redis.llen(self.settings.queue_name))
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc

    async def workers(self) -> list[dict[str, Any]]:
        """The live workers' self-descriptions (see ``worker.heartbeat``)."""
        try:
            keys = [key async for key in self.redis.scan_iter(match=WORKER_KEY_PREFIX + "*")]
            values = await self.redis.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        records = [parse_meta(value) for value in values]
        return sorted((r for r in records if r), key=lambda r: str(r.get("hostname")))

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
