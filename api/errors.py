"""The one place where errors become HTTP responses.

Every ``ServiceError`` carries its status; here it becomes ``{"detail": ...}`` with that
status. Validation errors become a readable 422, and anything unexpected a bare 500
without internals. No stack trace ever reaches a client. The OpenAPI description says
so too: every 422 is documented as ``ErrorResponse``, the body we send.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import PredictionTimeout, QueueFull, ServiceError, ServiceUnavailable
from shared.schemas import ErrorResponse

log = logging.getLogger("api.errors")

RETRY_AFTER_SECONDS = 1


class JobTimeout(PredictionTimeout):
    """A sync wait that ran out: the job goes on, and the client can poll it."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id


def error_response(exc: ServiceError) -> JSONResponse:
    body: dict[str, str] = {"detail": exc.detail}
    headers: dict[str, str] = {}
    if isinstance(exc, JobTimeout):
        body |= {"job_id": exc.job_id, "status_url": f"/jobs/{exc.job_id}"}
    if isinstance(exc, QueueFull | ServiceUnavailable):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
    return "Invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    async def on_service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        if exc.status_code >= 500:
            log.warning("request failed: %s", exc.detail, extra={"error_code": exc.code})
        return error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": _describe_validation(exc)}, status_code=422)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse({"detail": "Internal error."}, status_code=500)

    app.add_exception_handler(ServiceError, on_service_error)
    document_errors(app)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


# FastAPI documents every validated operation's 422 as its own ``HTTPValidationError`` (a
# list of error objects); our handler above sends ``{"detail": "<text>"}`` instead.
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def document_errors(app: FastAPI) -> None:
    """Make the OpenAPI description of every 422 match what ``on_validation_error`` sends."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                response = operation.get("responses", {}).get("422")
                if response is None:
                    continue
                body = response.setdefault("content", {}).setdefault("application/json", {})
                if "HTTPValidationError" in str(body.get("schema")):
                    response["description"] = "Invalid request; detail says what is wrong."
                    body["schema"] = _ERROR_REF
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in _FASTAPI_VALIDATION_SCHEMAS:
            schemas.pop(name, None)
        schemas.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
