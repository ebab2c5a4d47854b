"""Baseline (b), the plain template: one Celery task per request, the API blocks on it.

The design most FastAPI + Celery tutorials show: a ``def`` endpoint sends a task and waits
with ``AsyncResult.get(timeout=...)`` in FastAPI's thread pool; a worker runs the task
with the same model and preprocessing as ours. Its own Celery app, task name and queue,
so it never mixes with our stack even on the same Redis. JSON serializer; Redis is both
broker and result backend (``BASELINE_REDIS_URL``).

Run: ``uvicorn bench.baselines.plain_template:app`` and
``celery -A bench.baselines.plain_template:celery_app worker --concurrency 1``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from celery import Celery
from fastapi import FastAPI, File, HTTPException, UploadFile

from shared.settings import get_settings

REDIS_URL = os.environ.get("BASELINE_REDIS_URL", "redis://localhost:6379/1")
TASK_NAME = "plain.predict"
QUEUE = "plain"

celery_app = Celery("plain", broker=REDIS_URL, backend=REDIS_URL)
celery_app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,
)

_model: Any = None


def _get_model() -> Any:
    # Loaded lazily, so only the worker pays for scikit-learn; once per process.
    global _model  # noqa: PLW0603 - a process-wide cache is the point
    if _model is None:
        from shared.model import load

        _model = load(Path(get_settings().model_path))
    return _model


@celery_app.task(name=TASK_NAME)
def predict_task(image_b64: str) -> dict[str, Any]:
    from shared.inference import predict_files

    files = [base64.b64decode(image_b64)]
    item = predict_files(files, _get_model(), get_settings().max_image_pixels)[0]
    return item


app = FastAPI(title="baseline: plain Celery template")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict/mnist")
def predict(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI's idiom
    data = file.file.read()
    result = predict_task.delay(base64.b64encode(data).decode("ascii"))
    item = result.get(timeout=10)
    if item["error"] is not None:
        raise HTTPException(status_code=400, detail=item["error"]["detail"])
    return dict(item["prediction"])
