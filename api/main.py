"""The HTTP API: ``uvicorn api.main:app``.

It validates uploads, queues them as ``mnist.predict`` tasks (by name) and waits for the
answers without blocking the event loop. It never imports scikit-learn or loads the
model, except in embedded mode (see ``api.embedded``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from api.deps import reject_unknown_query
from api.errors import install_error_handlers
from api.job_store import JobStore
from api.jobs import JobQueue
from api.messages import MessageFactory
from api.metrics import Metrics
from api.middleware import RequestContextMiddleware
from api.publisher import (
    Admission,
    CeleryTaskPublisher,
    RedisTaskPublisher,
    TaskPublisher,
    origin,
)
from api.recovery import Recovery
from api.results import ResultListener
from api.routes import jobs, ops, page, predict
from api.routes.ops import ReadinessCache
from api.workers import WorkerDirectory
from shared import redis_clients
from shared.logs import configure_logging
from shared.queue import make_celery, result_key_prefix
from shared.settings import Settings, get_settings
from shared.tracing import Tracing

log = logging.getLogger("api")

DOCS_ASSETS_URL = "/docs-assets"  # Swagger UI's and ReDoc's scripts, CSS and favicon


def _admission(settings: Settings) -> Admission:
    return Admission(
        max_depth=settings.max_queue_depth,
        ttl_seconds=settings.result_ttl_seconds,
        memory_high_water=settings.redis_memory_high_water,
        min_replicas=settings.redis_min_replicas,
        replica_timeout_ms=round(settings.redis_replica_timeout_seconds * 1000),
    )


def create_app(
    settings: Settings | None = None, configure_logs: bool = False, tracing: Tracing | None = None
) -> FastAPI:
    """The app; ``configure_logs``: install the JSON log handlers when the server starts
    (not on import, so importing this module changes no global state); ``tracing``: from
    the ``OTEL_*`` variables unless given."""
    settings = settings or get_settings()
    tracing = tracing or Tracing("mnist-api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if configure_logs:
            configure_logging(settings.log_level, service="api")
        tracing.start()
        publisher: TaskPublisher
        messages: MessageFactory | None = None
        if settings.embedded:
            from api.embedded import embedded_queue

            celery_app, redis = embedded_queue(settings)
            publisher = CeleryTaskPublisher(celery_app, redis, settings.result_ttl_seconds)
        else:
            # The API's Celery app builds messages and names result keys; it never connects.
            celery_app = make_celery(settings, name="mnist-api")
            messages = MessageFactory(celery_app, settings.queue_name, origin())
            redis = redis_clients.async_client(settings)
            publisher = RedisTaskPublisher(redis, messages, _admission(settings))
        key_prefix = result_key_prefix(celery_app)
        listener = ResultListener(redis, key_prefix)
        listener.start()
        recovery = None
        if not settings.embedded:  # eager tasks never sit in Redis
            recovery = Recovery(
                redis,
                settings.queue_name,
                result_key_prefix=key_prefix,
                check_seconds=settings.lost_task_check_seconds,
                grace_seconds=settings.lost_task_grace_seconds,
                ttl_seconds=settings.result_ttl_seconds,
                on_requeued=app.state.metrics.requeued.inc,
            )
            recovery.start()
        workers = WorkerDirectory(redis, settings.queue_name)
        app.state.workers = workers
        app.state.store = JobStore(redis, key_prefix)
        tracer = tracing.provider.get_tracer("api.jobs") if tracing.provider else None
        app.state.jobs = JobQueue(
            settings, publisher, listener, workers, app.state.metrics, tracer=tracer
        )
        app.state.jobs.start()
        log.info(
            "api started",
            extra={
                "embedded": settings.embedded,
                "redis": "in-process" if settings.embedded else redis_clients.describe(settings),
                "min_replicas": settings.redis_min_replicas,
                "tracing": tracing.enabled,
            },
        )
        try:
            yield
        finally:
            try:
                await app.state.jobs.stop()
                if recovery is not None:
                    await recovery.stop()
                await listener.stop()
                if isinstance(publisher, CeleryTaskPublisher):
                    publisher.close()
                if messages is not None:
                    messages.close()
                await redis.aclose()
            finally:
                # Flushing may wait for an exporter's timeout: off the event loop.
                await asyncio.to_thread(tracing.shutdown)

    # FastAPI's /docs and /redoc load Swagger UI and ReDoc from a CDN; these serve the same
    # files from the package, so the docs work on a machine without internet.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS_URL,
        title="MNIST digit recognition",
        version="1.0.0",
        description="Upload an image of a handwritten digit; a Celery worker tells which it is.",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
        # FastAPI's own OpenTelemetry spans (the HTTP request, its dependencies, endpoint
        # and serialisation) with our provider; its metrics and logs stay off: Prometheus
        # and our JSON lines have those.
        telemetry={
            "tracing": tracing.enabled,
            "tracer_provider": tracing.provider,
            "metrics": False,
            "logs": False,
            "auto_configure": False,  # OTEL_* alone decide (FASTAPI_OTEL_AUTO_CONFIGURE aside)
        },
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.readiness = ReadinessCache()
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(jobs.router)
    app.include_router(ops.router)
    app.include_router(page.router)
    app.mount("/static", page.static_files(), name="static")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"]
        )
    app.add_middleware(RequestContextMiddleware, observers=[app.state.metrics.observe_request])
    return app


app = create_app(get_settings(), configure_logs=True)
