"""The worker's Celery application: ``celery -A worker.celery_app worker``.

Importing it builds the app and nothing more: no connection, no log handler, no signal
receiver. What the worker does when it starts (logs, the model, the heartbeat) is a
bootstep of this app (``worker/lifecycle.py``).
"""

from __future__ import annotations

from celery import Celery

from shared.queue import make_celery
from shared.schemas import TASK_PREDICT
from shared.settings import Settings, get_settings
from worker import tasks
from worker.lifecycle import WorkerLifecycle
from worker.result_store import result_store_class


def create_worker_app(settings: Settings, backend: type | None = None) -> Celery:
    """The worker's app; ``backend``: a result-backend class instead of ``result_store_class``."""
    store = backend or result_store_class(settings)
    celery_app = make_celery(settings, name="mnist-worker", backend=store)
    base = type("SettingsPredictTask", (tasks.PredictTask,), {"settings": settings})
    celery_app.task(name=TASK_PREDICT, bind=True, base=base, shared=False)(tasks.predict)
    lifecycle = type("SettingsWorkerLifecycle", (WorkerLifecycle,), {"settings": settings})
    celery_app.steps["worker"].add(lifecycle)
    return celery_app


app = create_worker_app(get_settings())
