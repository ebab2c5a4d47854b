"""Dependencies the routes declare, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant

from api.job_store import JobStore
from api.jobs import JobQueue
from api.workers import WorkerDirectory
from shared.errors import UnknownQueryOption
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


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    """Every endpoint's dependency: a query option it does not take is a 422, not ignored
    (``?async=true`` on an endpoint without it must not look like it worked)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    if not getattr(route, "include_in_schema", True):
        return  # the page at /: browsers' links carry query strings of their own
    unknown = sorted(set(request.query_params) - _query_names(dependant))
    if unknown:
        known = ", ".join(sorted(_query_names(dependant))) or "none"
        raise UnknownQueryOption(
            f"Unknown query option(s): {', '.join(unknown)}. This endpoint takes: {known}."
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]
StoreDep = Annotated[JobStore, Depends(get_store)]
WorkersDep = Annotated[WorkerDirectory, Depends(get_workers)]
