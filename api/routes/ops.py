"""Probes and introspection for operators: health, readiness, the model, metrics."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from api.deps import WorkersDep
from api.workers import WorkerDirectory
from shared.errors import ServiceError, ServiceUnavailable
from shared.schemas import ErrorResponse

router = APIRouter(tags=["operations"])

READY_CACHE_SECONDS = 1.0
READY_CHECK_TIMEOUT_SECONDS = 0.8


class Readiness(BaseModel):
    status: str
    workers: list[str] = Field(description="The live worker processes, as `hostname/pid`.")
    processes: int = Field(description="How many worker processes are live.")
    nodes: list[str] = Field(description="The Celery nodes (worker hostnames) they belong to.")
    model_version: str | None = Field(
        description="The version the processes serve; during a rollout, the versions "
        "comma-separated."
    )
    model_versions: list[str] = Field(
        description="Every version a live process serves (a canary included)."
    )


def process_name(record: dict[str, Any]) -> str:
    return str(record.get("process") or record.get("hostname"))


def served_versions(live: list[dict[str, Any]]) -> list[str]:
    """Every version the processes serve: the most served first, canaries after."""
    counts = Counter(str(w.get("model_version")) for w in live)
    main = sorted(counts, key=lambda v: (-counts[v], v))
    canaries = sorted(
        {str(w["canary"]["version"]) for w in live if isinstance(w.get("canary"), dict)} - set(main)
    )
    return main + canaries


@dataclass
class ReadinessCache:
    """Readiness is checked at most once a second, so probes cannot load Redis."""

    checked_at: float = float("-inf")
    answer: tuple[int, dict[str, Any]] | None = None
    lock: asyncio.Lock | None = None

    async def get(self, workers: WorkerDirectory) -> tuple[int, dict[str, Any]]:
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.answer is None or time.monotonic() - self.checked_at > READY_CACHE_SECONDS:
                self.answer = await self._check(workers)
                self.checked_at = time.monotonic()
            return self.answer

    async def _check(self, workers: WorkerDirectory) -> tuple[int, dict[str, Any]]:
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_SECONDS):
                await workers.ping()
                live = await workers.workers()
        except TimeoutError:
            return 503, {"detail": "Redis did not answer in time."}
        except ServiceError as exc:
            return 503, {"detail": exc.detail}
        if not live:
            return 503, {"detail": "No worker is running (none has sent a heartbeat)."}
        versions = served_versions(live)
        ready = Readiness(
            status="ready",
            workers=[process_name(w) for w in live],
            processes=len(live),
            nodes=sorted({str(w.get("hostname")) for w in live}),
            model_version=",".join(versions),
            model_versions=versions,
        )
        return 200, ready.model_dump()


@router.get("/health", summary="Liveness: the process serves (touches nothing else)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: Redis answers and at least one worker has the model loaded",
    response_model=Readiness,
    responses={503: {"model": ErrorResponse, "description": "Not ready; detail says why."}},
)
async def ready(request: Request, workers: WorkersDep) -> JSONResponse:
    cache: ReadinessCache = request.app.state.readiness
    status_code, body = await cache.get(workers)
    return JSONResponse(body, status_code=status_code)


class ServedVersion(BaseModel):
    version: str
    workers: list[str] = Field(description="The processes that serve it.")
    canary_percent: float | None = Field(
        default=None, description="Set for a canary: the share of images it answers."
    )
    trained_at: str | None = None
    test_accuracy: float | None = None
    test_ece: float | None = None
    ink_gamma: float | None = Field(
        default=None, description="Its lift of grey ink in uploads (see ModelInfo)."
    )


class ModelInfo(BaseModel):
    version: str
    workers: list[str]
    versions: list[ServedVersion] = Field(
        default_factory=list,
        description="Every version the live processes serve: one, or two during a rollout "
        "or a canary.",
    )
    pipeline: str | None = None
    trained_at: str | None = None
    sklearn_version: str | None = None
    test_accuracy: float | None = None
    test_ece: float | None = None
    classes: list[str] | None = None
    training_seconds: float | None = None
    train_images: int | None = None
    seed: int | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    temperature: float | None = None
    ink_gamma: float | None = Field(
        default=None,
        description="How the workers lift grey ink in uploads for this model (each pixel to "
        "this power; 1 is no lift): the model file's own value. None from a worker too old "
        "to report it.",
    )


@router.get(
    "/model",
    summary="The served model's metadata, as the workers report it",
    response_model=ModelInfo,
    responses={503: {"model": ErrorResponse, "description": "No worker is running."}},
)
async def model_info(workers: WorkersDep) -> ModelInfo:
    live = await workers.workers()
    if not live:
        raise ServiceUnavailable("No worker is running, so no model is served.")
    served: dict[str, ServedVersion] = {}
    for record in live:
        canary = record.get("canary") if isinstance(record.get("canary"), dict) else None
        entries = [(str(record.get("model_version")), record.get("model") or {}, None)]
        if canary is not None:
            entries.append((str(canary["version"]), canary.get("model") or {}, canary["percent"]))
        for version, meta, percent in entries:
            entry = served.setdefault(
                version,
                ServedVersion(
                    version=version,
                    workers=[],
                    trained_at=meta.get("trained_at"),
                    test_accuracy=meta.get("test_accuracy"),
                    test_ece=meta.get("test_ece"),
                    ink_gamma=meta.get("ink_gamma"),
                ),
            )
            entry.workers.append(process_name(record))
            if percent is not None:
                entry.canary_percent = float(percent)
    main = served_versions(live)[0]
    first = next(w for w in live if str(w.get("model_version")) == main)
    return ModelInfo(
        version=main,
        workers=served[main].workers,
        versions=[served[v] for v in served_versions(live)],
        **first.get("model", {}),
    )


@router.get(
    "/metrics", summary="Prometheus metrics (text format)", response_class=PlainTextResponse
)
async def metrics(request: Request, workers: WorkersDep) -> Response:
    registry = request.app.state.metrics
    try:  # live gauges are read at scrape time; a dead Redis must not break the scrape
        registry.queue_depth.set(await workers.queue_depth())
        registry.workers.set(await workers.processes())
    except ServiceError:
        pass
    return Response(registry.render(), media_type=registry.content_type)
