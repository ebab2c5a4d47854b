"""``POST /predict/mnist``: validate an upload, queue it, and wait for (or hand back) the job."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse

from api.deps import JobsDep, SettingsDep
from api.uploads import read_uploads
from shared.errors import MalformedRequest, ServiceError, TooManyFiles
from shared.imaging import inspect_image
from shared.schemas import (
    BatchItem,
    BatchResponse,
    ErrorResponse,
    ItemError,
    JobAccepted,
    PredictionResponse,
    TimeoutResponse,
)

router = APIRouter(tags=["predict"])


def _multipart_body(many: bool) -> dict[str, Any]:
    file_schema: dict[str, Any] = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": file_schema} if many else file_schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": schema},
                    },
                    "encoding": {"file": {"contentType": "image/png, image/jpeg"}},
                }
            },
        }
    }


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description, **extra}


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
BUSY = _error("Queue unreachable or full; see Retry-After.", headers=RETRY_AFTER)

# Every status each endpoint can answer, so the OpenAPI description is exact (the 422 of
# the query parameters' validation is ErrorResponse too: see api.errors.document_errors).
SINGLE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Empty upload, not an image, corrupt image, or malformed multipart body."),
    413: _error("Upload or image too large."),
    415: _error("An image format other than PNG or JPEG."),
    422: _error(
        "No 'file' field or several, not multipart, a bad or unknown query option, or no "
        "digit found."
    ),
    500: _error("The job failed on the worker (it crashed the worker, or the answer was bad)."),
    503: BUSY,
}
# A batch answers each image's own error inside its 200; only the request itself fails.
BATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed multipart body."),
    413: _error("A file too large, or too many files."),
    422: _error("No 'file' field, not multipart, or an unknown query option."),
    503: BUSY,
}


@router.post(
    "/predict/mnist",
    summary="Predict the digit in one image",
    response_model=PredictionResponse,
    response_model_exclude_none=True,
    responses={
        202: {
            "model": JobAccepted,
            "description": "With ?async=true: the job was queued.",
            "headers": {"Location": {"description": "The job.", "schema": {"type": "string"}}},
        },
        504: {"model": TimeoutResponse, "description": "Not done in time; poll the job."},
        **SINGLE_ERRORS,
    },
    openapi_extra=_multipart_body(many=False),
)
async def predict_mnist(
    request: Request,
    jobs: JobsDep,
    settings: SettingsDep,
    run_async: Annotated[
        bool, Query(alias="async", description="Answer 202 at once with a job to poll.")
    ] = False,
    include_input: Annotated[
        bool, Query(description="Add the 28x28 image the model saw (PNG data URL).")
    ] = False,
) -> PredictionResponse | JSONResponse:
    try:
        uploads = await read_uploads(request, settings.max_upload_bytes, max_files=1)
    except TooManyFiles as exc:  # here that is a misuse of the endpoint, not a size limit
        raise MalformedRequest(
            "Send exactly one 'file' part here; use /predict/mnist/batch for several."
        ) from exc
    image = uploads[0].data
    inspect_image(image, settings.max_image_pixels)
    ref = await jobs.submit(image, want_input=include_input, urgent=run_async)
    if run_async:
        accepted = JobAccepted(job_id=ref.job_id, status_url=f"/jobs/{ref.job_id}")
        return JSONResponse(
            accepted.model_dump(mode="json"),
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": accepted.status_url},
        )
    # Returned as is: built from the shared schemas by the worker, so it skips a second
    # validation on the hot path. A wait that runs out raises JobTimeout (504, with the job).
    return JSONResponse(await jobs.wait(ref, settings.sync_timeout_seconds))


@router.post(
    "/predict/mnist/batch",
    summary="Predict the digits in several images at once",
    response_model=BatchResponse,
    responses=BATCH_ERRORS,
    openapi_extra=_multipart_body(many=True),
)
async def predict_mnist_batch(
    request: Request,
    jobs: JobsDep,
    settings: SettingsDep,
    include_input: Annotated[
        bool, Query(description="Add to each answer the 28x28 image the model saw.")
    ] = False,
) -> BatchResponse:
    """Answers in the order of the ``file`` parts; a bad image fails only its own entry."""
    uploads = await read_uploads(request, settings.max_upload_bytes, settings.max_batch_files)
    results: list[BatchItem | None] = [None] * len(uploads)
    valid: list[int] = []
    for position, upload in enumerate(uploads):
        try:
            inspect_image(upload.data, settings.max_image_pixels)
            valid.append(position)
        except ServiceError as exc:
            results[position] = _failed(upload.filename, exc)
    if valid:
        refs = await jobs.submit_many([uploads[i].data for i in valid], want_input=include_input)
        # One wait for the whole task: the batch answers within about one timeout.
        answers = await jobs.wait_all(refs, settings.sync_timeout_seconds)
        for position, answer in zip(valid, answers, strict=True):
            filename = uploads[position].filename
            if isinstance(answer, ServiceError):
                results[position] = _failed(filename, answer)
            else:
                result = PredictionResponse.model_validate(answer)
                results[position] = BatchItem(filename=filename, status_code=200, result=result)
    return BatchResponse(results=[item for item in results if item is not None])


def _failed(filename: str, exc: ServiceError) -> BatchItem:
    return BatchItem(
        filename=filename,
        status_code=exc.status_code,
        error=ItemError(code=exc.code, detail=exc.detail),
    )
