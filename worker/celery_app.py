"""The worker's Celery application: ``celery -A worker.celery_app worker``.

The model is trained if missing (under a file lock) when the worker starts, before the
pool forks, and loaded once per process; tasks then find it in memory.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from threadpoolctl import threadpool_limits

from shared import redis_clients
from shared.logs import configure_logging
from shared.queue import make_celery
from shared.schemas import TASK_PREDICT
from shared.settings import Settings, get_settings
from worker import tasks
from worker.heartbeat import Heartbeat
from worker.result_store import result_store_class

log = logging.getLogger("worker")


def create_worker_app(settings: Settings, backend: type | None = None) -> Celery:
    """The worker's app; ``backend``: a result-backend class instead of ``result_store_class``."""
    store = backend or result_store_class(settings)
    celery_app = make_celery(settings, name="mnist-worker", backend=store)
    base = type("SettingsPredictTask", (tasks.PredictTask,), {"settings": settings})
    celery_app.task(name=TASK_PREDICT, bind=True, base=base, shared=False)(tasks.predict)
    return celery_app


settings = get_settings()
app = create_worker_app(settings)


_heartbeats: list[Heartbeat] = []


@setup_logging.connect  # type: ignore[untyped-decorator]  # Celery ships no type hints
def _json_logs(**_: Any) -> None:
    # Having a receiver stops Celery from installing its own text handlers, in the main
    # process and in each pool process alike.
    configure_logging(settings.log_level, service="worker")


def _one_blas_thread() -> None:
    # Throughput comes from worker processes; BLAS threads inside each would only fight
    # over the same cores (measured: slower batches under load, never faster).
    threadpool_limits(1)


@worker_init.connect  # type: ignore[untyped-decorator]  # Celery ships no type hints
def _prepare_model(**_: Any) -> None:
    tasks.get_model(settings)  # trains first if needed, with every core
    _one_blas_thread()


@worker_ready.connect  # type: ignore[untyped-decorator]  # Celery ships no type hints
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", None) or "worker"
    client = redis_clients.sync_client(settings)
    concurrency = int(getattr(getattr(sender, "pool", None), "limit", None) or 1)
    heartbeat = Heartbeat(client, tasks.get_model(settings), hostname, concurrency)
    heartbeat.start()
    _heartbeats.append(heartbeat)
    log.info(
        "worker ready",
        extra={
            "hostname": hostname,
            "queue": settings.queue_name,
            "concurrency": concurrency,
            "redis": redis_clients.describe(settings),
        },
    )


@worker_shutdown.connect  # type: ignore[untyped-decorator]  # Celery ships no type hints
def _stop_heartbeat(**_: Any) -> None:
    while _heartbeats:
        _heartbeats.pop().stop()


@worker_process_init.connect  # type: ignore[untyped-decorator]  # Celery ships no type hints
def _load_model_in_child(**_: Any) -> None:
    _one_blas_thread()
    tasks.get_model(settings)
