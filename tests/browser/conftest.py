"""A real Chromium, driven by Playwright, against a live stack (Redis, a worker, uvicorn).

Chromium is Debian's (``/usr/bin/chromium``), never one Playwright downloads. Without it,
or without Playwright, the browser tests skip, unless ``REQUIRE_BROWSER=1`` (CI), where
that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

import pytest

# The live-stack fixtures, shared with the integration tests.
from tests.integration.conftest import Stack, stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["browser", "served", "stack", "tab"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")  # closed with its module: no idle Chromium during later tests
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (the dev extra: make test installs it)")
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(browser: Browser, stack: Stack) -> str:
    """The API's base URL, with one worker on a queue of this module's own."""
    queue = f"browser-{uuid.uuid4().hex[:8]}"
    stack.worker("main", QUEUE_NAME=queue)
    _, base = stack.api(QUEUE_NAME=queue)
    return base


@dataclass
class Tab:
    """A page of the app in a fresh browser context, with every URL it requested."""

    page: Page
    base: str
    requested: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Requests to anywhere but the test server (inline data: and blob: URLs are fine)."""
        ours = urlsplit(self.base).netloc
        return [
            url
            for url in self.requested
            if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).netloc != ours
        ]


@pytest.fixture
def tab(browser: Browser, served: str) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 800, "height": 720})
    page = context.new_page()
    page.set_default_timeout(20_000)
    opened = Tab(page, served)
    page.on("request", lambda request: opened.requested.append(request.url))
    page.goto(served + "/")
    yield opened
    context.close()
