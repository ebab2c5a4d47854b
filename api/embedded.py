"""Embedded mode: no Redis, tasks run inside the API process.

This is the one place where the API process loads the model. Celery runs tasks eagerly
and stores their results in an in-process fake Redis, which the API reads exactly as it
reads the real one, so every endpoint (async jobs and polling included) behaves the same.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property

import fakeredis
from celery import Celery
from redis.asyncio import Redis

from shared.queue import WORKER_KEY_PREFIX, WORKERS_KEY
from shared.schemas import TASK_PREDICT
from shared.settings import Settings

log = logging.getLogger("api.embedded")


def embedded_queue(settings: Settings) -> tuple[Celery, Redis]:
    from worker import tasks
    from worker.celery_app import create_worker_app
    from worker.heartbeat import worker_record
    from worker.result_store import result_store_class

    log.warning(
        "EMBEDDED MODE: no Redis; predictions run inside the API process and results live "
        "in memory. Start Redis and a worker for the real service (see README)."
    )
    server = fakeredis.FakeServer()

    class InMemoryResultStore(result_store_class(settings)):  # type: ignore[misc]
        """Celery's Redis result backend, writing to the in-process store."""

        @cached_property
        def client(self) -> fakeredis.FakeRedis:
            return fakeredis.FakeRedis(server=server)

    celery_app = create_worker_app(settings, backend=InMemoryResultStore)
    celery_app.tasks[TASK_PREDICT].redis_client = fakeredis.FakeRedis(server=server)
    model = tasks.get_model(settings)
    # The API process is this mode's only worker: it announces itself like one, for good.
    record = worker_record(model, hostname="embedded")
    store = fakeredis.FakeRedis(server=server)
    store.set(WORKER_KEY_PREFIX + record["process"], json.dumps(record))
    store.sadd(WORKERS_KEY, record["process"])
    return celery_app, fakeredis.FakeAsyncRedis(server=server)
