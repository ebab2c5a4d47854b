"""The ``mnist.predict`` task: thin on purpose.

It decodes the JSON-safe payload, hands the images to ``shared.inference`` and returns a
JSON-safe dict. Everything else (limits, normalisation, the model) lives in ``shared/``.

Traced (``worker.lifecycle`` turns Celery's OpenTelemetry instrumentation on), the task runs
inside its ``run/mnist.predict`` span, continuing the trace whose context the API put in
the task's headers; the time the task spent queued becomes a ``queue wait`` span beside
it, from the API's ``enqueued_at`` to the task's start.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.celery import celery_getter

from shared import redis_clients
from shared.errors import InvalidInput, PredictionFailed, PredictionTimeout, ServiceError
from shared.inference import predict_files
from shared.model import Model
from shared.queue import ATTEMPTS_KEY_PREFIX
from shared.settings import Settings
from worker import model_reload

log = logging.getLogger("worker.tasks")
tracer = trace.get_tracer(__name__)


def get_model(settings: Settings) -> Model:
    """The served model, loaded (or trained) once per process; ``worker.model_reload``
    keeps it on the served version from then on."""
    return model_reload.follower(settings).load_initial().model


def predict_with(
    serving: model_reload.Serving,
    files: list[bytes],
    max_pixels: int,
    return_inputs: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """``predict_files`` with the served model, or with a canary for its share of the
    images (each such item then names its own ``model_version``)."""
    if serving.canary is None:
        return predict_files(files, serving.model, max_pixels, return_inputs)
    groups: dict[str, tuple[Model, list[int]]] = {}
    for position, data in enumerate(files):
        model = serving.model_for(data)
        groups.setdefault(model.version, (model, []))[1].append(position)
    items: list[dict[str, Any]] = [{} for _ in files]
    for version, (model, positions) in groups.items():
        wanted = frozenset(i for i, p in enumerate(positions) if p in return_inputs)
        answers = predict_files([files[p] for p in positions], model, max_pixels, wanted)
        for position, item in zip(positions, answers, strict=True):
            item["model_version"] = version
            items[position] = item
    return items


def _decode_payload(images: list[str]) -> tuple[list[bytes], set[int]]:
    """The image bytes, and the positions whose payload was not base64 (sent as b"")."""
    decoded: list[bytes] = []
    invalid: set[int] = set()
    for position, text in enumerate(images):
        try:
            decoded.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError, TypeError):
            decoded.append(b"")
            invalid.add(position)
    return decoded, invalid


def _trace_queue_wait(task: Task, enqueued_at: float | None, started: float) -> None:
    """A ``queue wait`` span from the enqueue to now, with the task span's own parent (the
    API's publish span, read from the headers as the instrumentation reads them)."""
    if enqueued_at is None or not trace.get_current_span().is_recording():
        return
    parent = propagate.extract(task.request, getter=celery_getter)
    span = tracer.start_span(
        "queue wait",
        context=parent,
        start_time=int(enqueued_at * 1e9),
        attributes={"messaging.message.id": task.request.id or ""},
    )
    span.end(end_time=max(int(started * 1e9), int(enqueued_at * 1e9)))


def _failed_items(count: int, error: ServiceError) -> list[dict[str, Any]]:
    return [{"prediction": None, "error": error.to_dict()} for _ in range(count)]


class PredictTask(Task):  # type: ignore[misc]  # Celery is untyped
    """Gives up on a message that keeps killing its worker instead of looping forever.

    With late acks, a task whose worker dies is delivered again; a poison message would
    come back for ever. Each delivery is counted in Redis and, past the limit, the task
    answers with an error for every image instead of running.
    """

    abstract = True
    settings: Settings
    # Made on first use, so in each pool process after the fork; embedded mode sets its own.
    redis_client: redis.Redis | None = None

    def attempts(self) -> int:
        task_id = self.request.id
        if task_id is None:
            return 1
        if self.redis_client is None:
            self.redis_client = redis_clients.sync_client(self.settings)
        key = ATTEMPTS_KEY_PREFIX + task_id
        try:
            pipe = self.redis_client.pipeline()
            pipe.incr(key)
            pipe.expire(key, self.settings.result_ttl_seconds)
            count, _ = pipe.execute()
        except Exception:  # noqa: BLE001 - counting is best effort; never fail the task for it
            log.warning("could not count attempts", extra={"task_id": task_id})
            return 1
        return int(count)


def predict(
    task: PredictTask,
    images: list[str],
    request_ids: list[str] | None = None,
    enqueued_at: float | None = None,
    return_inputs: list[int] | None = None,
) -> dict[str, Any]:
    started = time.time()
    _trace_queue_wait(task, enqueued_at, started)
    settings = task.settings
    request_ids = request_ids or []
    attempts = task.attempts()
    # Read once: the task finishes on these models even if a new version is swapped in.
    serving = model_reload.follower(settings).current()
    base = {"worker": task.request.hostname or "local", "model_version": serving.model.version}
    if attempts > settings.task_max_retries + 1:
        log.error(
            "task gave up: it was delivered %d times, each ending its worker",
            attempts,
            extra={"task_id": task.request.id, "request_ids": request_ids},
        )
        failure = PredictionFailed(
            f"The job was abandoned after {attempts - 1} attempts that each crashed a worker."
        )
        timings = {"queue_wait_ms": None, "inference_ms": 0.0}
        return {**base, "items": _failed_items(len(images), failure), "timings": timings}

    files, invalid = _decode_payload(images)
    try:
        items = predict_with(
            serving, files, settings.max_image_pixels, frozenset(return_inputs or ())
        )
        for position in invalid:
            items[position] = {
                "prediction": None,
                "error": InvalidInput("The task payload was not base64.").to_dict(),
            }
        outcome = "ok"
    except SoftTimeLimitExceeded:
        items = _failed_items(len(images), PredictionTimeout())
        outcome = "timeout"
    finished = time.time()
    # The result follows shared.schemas.TaskResult; built as a dict, it is JSON as it stands.
    timings = {
        "queue_wait_ms": round((started - enqueued_at) * 1000, 3) if enqueued_at else None,
        "inference_ms": round((finished - started) * 1000, 3),
    }
    log.info(
        "task done",
        extra={
            "task_id": task.request.id,
            "request_ids": request_ids,
            "images": len(images),
            "errors": sum(item["error"] is not None for item in items),
            "outcome": outcome,
            "attempt": attempts,
            **timings,
        },
    )
    return {**base, "items": items, "timings": timings}
