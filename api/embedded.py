"""Embedded mode: no Redis, tasks run inside the API process.

This is the one place where the API process loads the model. Celery runs tasks eagerly
and stores their results in an in-process fake Redis, which the API reads exactly as it
reads the real one, so every endpoint (async jobs and polling included) behaves the same.
"""

from __future__ import annotations

import json
import logging

import fakeredis
from celery import Celery
from celery.backends.base import Backend
from redis.asyncio import Redis

from shared.queue import WORKER_KEY_PREFIX
from shared.schemas import TASK_PREDICT
from shared.settings import Settings

log = logging.getLogger("api.embedded")


def embedded_queue(settings: Settings) -> tuple[Celery, Redis]:
    from worker import tasks
    from worker.celery_app import create_worker_app
    from worker.heartbeat import worker_record

    log.warning(
        "EMBEDDED MODE: no Redis; predictions run inside the API process and results live "
        "in memory. Start Redis and a worker for the real service (see README)."
    )
    server = fakeredis.FakeServer()
    celery_app = create_worker_app(settings)
    make_backend = celery_app._get_backend

    def in_memory_backend() -> Backend:
        # Celery keeps one backend per thread; each must write to the in-process store.
        backend = make_backend()
        backend.client = fakeredis.FakeRedis(server=server)
        return backend

    celery_app._get_backend = in_memory_backend  # type: ignore[method-assign]
    celery_app.tasks[TASK_PREDICT].redis_client = fakeredis.FakeRedis(server=server)
    model = tasks.get_model(settings)
    # The API process is this mode's only worker: it announces itself like one, for good.
    record = worker_record(model, hostname="embedded")
    fakeredis.FakeRedis(server=server).set(WORKER_KEY_PREFIX + "embedded", json.dumps(record))
    return celery_app, fakeredis.FakeAsyncRedis(server=server)
