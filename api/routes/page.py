"""The web page: ``GET /`` serves a drawing pad that talks to the API like any client.

Plain files from ``api/static`` (no build step). The page refers to its assets and to the
API by relative URLs, so it works wherever the API is mounted.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    # no-cache: browsers revalidate (cheap, ETag) so a new release shows up at once.
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def static_files() -> StaticFiles:
    """The page's CSS and JavaScript, to mount at ``/static``."""
    return StaticFiles(directory=STATIC_DIR)
