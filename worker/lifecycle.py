"""What a worker does as it starts and stops: a Celery bootstep of the worker's own app.

A bootstep rather than signals connected at import: receivers are process-wide and would
be connected by merely importing a module (the API's embedded mode imports the worker's
app), while a step belongs to one app and runs only when that app's worker starts. The
step itself connects the two pool-process signals it needs, so only a started worker has
them.

As the worker starts, before its pool forks: JSON logs (replacing the handlers Celery has
just installed), the served model (trained first if missing, under a file lock, with every
core), and one BLAS thread. The pool processes inherit all three. In each pool process as
it starts: the model follower (``worker.model_reload``), that process's heartbeat,
stopped (its key deleted) as the process ends, and, when ``OTEL_TRACES_EXPORTER`` asks for
it (``shared.tracing``), tracing: its exporter threads and Celery's OpenTelemetry
instrumentation, which must start after the fork, and flush as the process ends. With a
pool that does not fork (solo, threads), the worker's own process runs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, ClassVar

import celery
import redis
from celery import bootsteps
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_process_init, worker_process_shutdown
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from threadpoolctl import threadpool_limits

from shared import redis_clients
from shared.errors import ServiceError
from shared.logs import configure_logging
from shared.model import Model
from shared.settings import Settings
from shared.tracing import Tracing, TracingConfigError
from worker import model_reload
from worker.heartbeat import Heartbeat, forget_node

log = logging.getLogger("worker")


class WorkerLifecycle(bootsteps.StartStopStep):  # type: ignore[misc]  # Celery is untyped
    """Added to the worker blueprint by ``worker.celery_app.create_worker_app``."""

    requires = ("celery.worker.components:Pool",)  # started once the pool runs
    settings: ClassVar[Settings]

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        configure_logging(self.settings.log_level, service="worker")
        try:
            self.tracing = Tracing("mnist-worker")
        except TracingConfigError as exc:
            log.critical(str(exc))
            raise SystemExit(1) from None
        self.follower = model_reload.follower(self.settings)
        try:
            serving = self.follower.load_initial()
        except ServiceError as exc:  # e.g. no model and no MNIST to train one: say it in a line
            log.critical(exc.detail, extra={"code": exc.code})
            raise SystemExit(1) from None
        log.info(
            "model loaded",
            extra={
                "model_version": serving.model.version,
                "model_path": str(self.settings.model_path),
            },
        )
        # Throughput comes from worker processes; BLAS threads inside each would only fight
        # over the same cores (measured: slower batches under load, never faster).
        threadpool_limits(1)
        self.hostname = str(getattr(worker, "hostname", None) or "worker")
        self.heartbeat: Heartbeat | None = None
        self._started_in = 0  # the pid _process_started ran in, until it stops
        uid = f"mnist-lifecycle-{id(self)}"
        worker_process_init.connect(self._process_started, weak=False, dispatch_uid=uid)
        worker_process_shutdown.connect(self._process_stopping, weak=False, dispatch_uid=uid)

    def _serving(self) -> tuple[Model, Model | None, float]:
        serving = self.follower.current()
        return serving.model, serving.canary, serving.canary_percent

    def _process_started(self, **_: Any) -> None:
        """In each pool process (and in the worker's own with a pool that does not fork)."""
        if self._started_in == os.getpid():  # a pool may also send worker_process_init
            return
        self._started_in = os.getpid()
        if self.tracing.provider is not None:
            self.tracing.start()
            # Our own spans (shared.inference, worker.tasks) use the global provider.
            trace.set_tracer_provider(self.tracing.provider)
            # The instrumentor leaves its constructor unannotated.
            instrumentor = CeleryInstrumentor()  # type: ignore[no-untyped-call]
            instrumentor.instrument(tracer_provider=self.tracing.provider)
        self.follower.start()
        client = redis_clients.sync_client(self.settings)
        self.heartbeat = Heartbeat(client, self.hostname, self._serving)
        self.heartbeat.start()

    def _process_stopping(self, **_: Any) -> None:
        self._started_in = 0
        self.follower.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        self.tracing.shutdown()

    def start(self, worker: Any) -> None:
        self.hostname = str(getattr(worker, "hostname", None) or self.hostname)
        pool = getattr(worker, "pool", None)
        forks = isinstance(pool, PreforkPool)
        if not forks:
            self._process_started()
        # What Celery's banner would say (it is off: plain text), as one JSON line.
        log.info(
            "worker ready",
            extra={
                "hostname": self.hostname,
                "queue": self.settings.queue_name,
                "concurrency": int(getattr(pool, "limit", None) or 1),
                "pool": type(pool).__module__.rsplit(".", 1)[-1],
                "redis": redis_clients.describe(self.settings),
                "tasks": sorted(name for name in worker.app.tasks if not name.startswith("celery")),
                "model_version": self.follower.load_initial().model.version,
                "model_reload_seconds": self.settings.model_reload_seconds,
                "model_path": str(self.settings.model_path),
                "tracing": self.tracing.enabled,
                "celery": celery.__version__,
            },
        )

    def stop(self, worker: Any) -> None:
        self._process_stopping()
        with contextlib.suppress(redis.RedisError, OSError):
            # The pool processes' keys go at once, not after their TTL.
            forget_node(redis_clients.sync_client(self.settings), self.hostname)

    def terminate(self, worker: Any) -> None:
        self.stop(worker)
