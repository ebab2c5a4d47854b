"""What a worker does as it starts and stops: a Celery bootstep of the worker's own app.

A bootstep rather than Celery's signals: signal receivers are process-wide and get
connected by merely importing a module (the API's embedded mode imports the worker's app),
while a step belongs to one app and runs only when that app's worker starts.

As the worker starts, before its pool forks: JSON logs (replacing the handlers Celery has
just installed), the model (trained first if missing, under a file lock, with every
core), and one BLAS thread. The pool processes inherit all three. Once the pool runs: the
heartbeat, stopped (its key deleted) when the worker stops.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import celery
from celery import bootsteps
from threadpoolctl import threadpool_limits

from shared import redis_clients
from shared.errors import ServiceError
from shared.logs import configure_logging
from shared.settings import Settings
from worker import tasks
from worker.heartbeat import Heartbeat

log = logging.getLogger("worker")


class WorkerLifecycle(bootsteps.StartStopStep):  # type: ignore[misc]  # Celery is untyped
    """Added to the worker blueprint by ``worker.celery_app.create_worker_app``."""

    requires = ("celery.worker.components:Pool",)  # started once the pool runs
    settings: ClassVar[Settings]

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        configure_logging(self.settings.log_level, service="worker")
        try:
            tasks.get_model(self.settings)
        except ServiceError as exc:  # e.g. no model and no MNIST to train one: say it in a line
            log.critical(exc.detail, extra={"code": exc.code})
            raise SystemExit(1) from None
        # Throughput comes from worker processes; BLAS threads inside each would only fight
        # over the same cores (measured: slower batches under load, never faster).
        threadpool_limits(1)
        self.heartbeat: Heartbeat | None = None

    def start(self, worker: Any) -> None:
        hostname = str(getattr(worker, "hostname", None) or "worker")
        concurrency = int(getattr(getattr(worker, "pool", None), "limit", None) or 1)
        client = redis_clients.sync_client(self.settings)
        self.heartbeat = Heartbeat(client, tasks.get_model(self.settings), hostname, concurrency)
        self.heartbeat.start()
        # What Celery's banner would say (it is off: plain text), as one JSON line.
        log.info(
            "worker ready",
            extra={
                "hostname": hostname,
                "queue": self.settings.queue_name,
                "concurrency": concurrency,
                "pool": type(getattr(worker, "pool", None)).__module__.rsplit(".", 1)[-1],
                "redis": redis_clients.describe(self.settings),
                "tasks": sorted(name for name in worker.app.tasks if not name.startswith("celery")),
                "model_version": tasks.get_model(self.settings).version,
                "model_path": str(self.settings.model_path),
                "celery": celery.__version__,
            },
        )

    def stop(self, worker: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None

    def terminate(self, worker: Any) -> None:
        self.stop(worker)
