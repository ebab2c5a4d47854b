"""Dependencies the routes declare, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.job_store import JobStore
from api.jobs import JobQueue
from api.workers import WorkerDirectory
from shared.settings import Settings


# ``async def``: FastAPI would run a plain ``def`` dependency in its thread pool, a thread
# hop per request for what is an attribute read.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue = request.app.state.jobs
    return jobs


async def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


async def get_workers(request: Request) -> WorkerDirectory:
    workers: WorkerDirectory = request.app.state.workers
    return workers


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
StoreDep = Annotated[JobStore, Depends(get_store)]
WorkersDep = Annotated[WorkerDirectory, Depends(get_workers)]
