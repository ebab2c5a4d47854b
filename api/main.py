"""The HTTP API: ``uvicorn api.main:app``.

It validates uploads, queues them as ``mnist.predict`` tasks (by name) and waits for the
answers without blocking the event loop. It never imports scikit-learn or loads the
model, except in embedded mode (see ``api.embedded``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.errors import install_error_handlers
from api.jobs import JobQueue
from api.metrics import Metrics
from api.middleware import RequestContextMiddleware
from api.publisher import Admission, CeleryTaskPublisher, RedisTaskPublisher, TaskPublisher
from api.results import ResultListener
from api.routes import jobs, ops, page, predict
from api.routes.ops import ReadinessCache
from shared import redis_clients
from shared.logs import configure_logging
from shared.settings import Settings, get_settings

log = logging.getLogger("api")


def _admission(settings: Settings) -> Admission:
    return Admission(
        max_depth=settings.max_queue_depth,
        ttl_seconds=settings.result_ttl_seconds,
        memory_high_water=settings.redis_memory_high_water,
        min_replicas=settings.redis_min_replicas,
        replica_timeout_ms=round(settings.redis_replica_timeout_seconds * 1000),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher: TaskPublisher
        if settings.embedded:
            from api.embedded import embedded_queue

            celery_app, redis = embedded_queue(settings)
            publisher = CeleryTaskPublisher(celery_app, redis, settings.result_ttl_seconds)
        else:
            redis = redis_clients.async_client(settings)
            publisher = RedisTaskPublisher(redis, settings.queue_name, _admission(settings))
        listener = ResultListener(redis)
        listener.start()
        app.state.jobs = JobQueue(settings, publisher, redis, listener, app.state.metrics)
        app.state.jobs.start()
        log.info(
            "api started",
            extra={
                "embedded": settings.embedded,
                "redis": "in-process" if settings.embedded else redis_clients.describe(settings),
                "min_replicas": settings.redis_min_replicas,
            },
        )
        try:
            yield
        finally:
            await app.state.jobs.stop()
            await listener.stop()
            if isinstance(publisher, CeleryTaskPublisher):
                publisher.close()
            await redis.aclose()

    app = FastAPI(
        title="MNIST digit recognition",
        version="1.0.0",
        description="Upload an image of a handwritten digit; a Celery worker tells which it is.",
        lifespan=lifespan,
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


def _app_from_env() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level, service="api")
    return create_app(settings)


app = _app_from_env()
