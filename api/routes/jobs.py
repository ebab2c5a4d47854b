"""``GET /jobs/{job_id}``: the state of a job submitted with ``?async=true`` (or timed out)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from api.deps import StoreDep
from shared.schemas import ErrorResponse, JobStatus

router = APIRouter(tags=["jobs"])


@router.get(
    "/jobs/{job_id}",
    summary="A job's status and, once done, its result",
    response_model=JobStatus,
    responses={
        404: {"model": ErrorResponse, "description": "Never issued, or expired."},
        503: {"model": ErrorResponse, "description": "Queue unreachable."},
    },
)
async def get_job(
    job_id: Annotated[str, Path(max_length=64, description="The id a prediction returned.")],
    store: StoreDep,
) -> JSONResponse:
    body = (await store.status(job_id)).model_dump(mode="json")
    if body["result"] is not None and body["result"]["input_image"] is None:
        del body["result"]["input_image"]  # present only when it was asked for
    return JSONResponse(body)
