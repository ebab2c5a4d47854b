"""Per-request context: a request id, and one structured log line per request.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so it adds no task or copy per request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logs import request_id_var

log = logging.getLogger("api.access")

REQUEST_ID_HEADER = b"x-request-id"
# A client's id is kept only if it is short and plain: it goes into logs and headers.
_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

RequestObserver = Callable[[str, str, int, float], None]


def route_label(scope: Scope, root_path: str) -> str:
    """The route template a request matched, for metric labels (never the raw path, whose
    ids would make a label per request); ``unmatched`` for a 404. ``root_path``: the
    scope's before routing (a mount changes it)."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # Starlette's own routes and mounts (the docs, the OpenAPI schema, /static) do not put
    # themselves in the scope as FastAPI's do: find the one that matches.
    probe = {**scope, "root_path": root_path}
    for route in getattr(scope.get("app"), "routes", ()):
        match, _ = route.matches(probe)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched") or "unmatched")
    return "unmatched"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, observers: list[RequestObserver] | None = None) -> None:
        self.app = app
        self.observers = observers if observers is not None else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER)
        request_id = given.decode() if given and _SAFE_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_code = 500
        root_path = scope.get("root_path", "")

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            path = route_label(scope, root_path)
            for observe in self.observers:
                observe(scope["method"], path, status_code, seconds)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status_code,
                    "latency_ms": round(seconds * 1000, 3),
                },
            )
            request_id_var.reset(token)
