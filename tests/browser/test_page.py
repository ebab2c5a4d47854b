"""The web page in a real browser, against the real service.

Digits are drawn with the mouse through Pointer Events, as a person would; the answers
come from a live worker. The test model is small (6,000 training images), so drawn digits
are bold and MNIST-like.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import Tab
from tests.conftest import REPO
from tests.images import png

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # the conftest's skip (or CI failure) says why
    if os.environ.get("REQUIRE_BROWSER") == "1":
        raise
    pytest.skip("playwright is not installed", allow_module_level=True)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ARTIFACTS = REPO / "artifacts" / "browser"
ANSWER_TIMEOUT_MS = 20_000
EMPTY = "\u2013"  # the en dash the page shows while there is no answer

# Strokes as polylines in pad coordinates (0..1 on both axes), like a person's digits.
ONE = [[(0.54, 0.14), (0.52, 0.50), (0.50, 0.86)]]
SEVEN = [[(0.26, 0.20), (0.74, 0.20), (0.60, 0.45), (0.44, 0.86)]]


def draw(page: Page, strokes: list[list[tuple[float, float]]]) -> None:
    box = page.locator('[data-testid="pad"]').bounding_box()
    assert box is not None
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=12)
        page.mouse.up()


def answer(tab: Tab, name: str) -> str:
    """Waits for a predicted digit; keeps the image the model saw for a failing assertion."""
    page = tab.page
    prediction = page.locator('[data-testid="prediction"]')
    expect(prediction).to_have_text(re.compile(r"^\d$"), timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator('[data-testid="result"]')).to_have_attribute("aria-busy", "false")
    source = page.locator('[data-testid="input-image"]').get_attribute("src") or ""
    if source.startswith("data:image/png;base64,"):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        seen = base64.b64decode(source.split(",", 1)[1])
        (ARTIFACTS / f"{name}-model-input.png").write_bytes(seen)
    return prediction.inner_text()


def screenshot(tab: Tab, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=ARTIFACTS / f"{name}.png")


def assert_only_local(tab: Tab) -> None:
    assert tab.requested, "no requests were recorded"
    assert tab.foreign_requests() == []


def test_drawn_digits_are_recognised(tab: Tab) -> None:
    page = tab.page
    expect(page.locator('[data-testid="result"]')).to_have_attribute("aria-live", "polite")

    draw(page, ONE)
    assert answer(tab, "one") == "1"
    expect(page.locator('[data-testid="confidence"]')).to_have_text(re.compile(r"^\d+\.\d%$"))
    expect(page.locator('[data-testid="top3"] li')).to_have_count(3)
    expect(page.locator('[data-testid="seen"]')).to_be_visible()

    page.locator('[data-testid="clear"]').click()
    expect(page.locator('[data-testid="prediction"]')).to_have_text(EMPTY)

    draw(page, SEVEN)
    assert answer(tab, "seven") == "7"
    screenshot(tab, "drawn-seven")
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":  # refreshes the README's picture
        (REPO / "docs").mkdir(exist_ok=True)
        tab.page.screenshot(path=REPO / "docs" / "page.png")
    assert_only_local(tab)


def test_undo_removes_the_last_stroke(tab: Tab) -> None:
    page = tab.page
    undo = page.locator('[data-testid="undo"]')
    expect(undo).to_be_disabled()
    draw(page, ONE)
    answer(tab, "undo")
    undo.click()
    expect(undo).to_be_disabled()
    expect(page.locator('[data-testid="prediction"]')).to_have_text(EMPTY)
    blank = page.evaluate(
        """() => {
          const pad = document.querySelector('[data-testid="pad"]');
          const pixels = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
          return pixels.every((value) => value === 0);
        }"""
    )
    assert blank


def test_an_uploaded_mnist_image_is_recognised(
    tab: Tab, mnist: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    images, labels = mnist
    upload = tmp_path / "mnist-0.png"
    upload.write_bytes(png(images[0]))
    tab.page.locator('[data-testid="file"]').set_input_files(upload)
    assert answer(tab, "upload") == str(labels[0])
    expect(tab.page.locator('[data-testid="source"]')).to_contain_text("mnist-0.png")
    assert_only_local(tab)


def test_a_text_file_shows_the_services_error(tab: Tab, tmp_path: Path) -> None:
    upload = tmp_path / "notes.txt"
    upload.write_text("definitely not an image\n")
    tab.page.locator('[data-testid="file"]').set_input_files(upload)
    error = tab.page.locator('[data-testid="error"]')
    expect(error).to_be_visible()
    expect(error).to_have_text("File provided is not an image.")
    expect(tab.page.locator('[data-testid="prediction"]')).to_have_text(EMPTY)
    screenshot(tab, "not-an-image")


def test_async_mode_follows_the_job_until_it_succeeds(tab: Tab) -> None:
    page = tab.page
    page.locator('[data-testid="async"]').check()
    draw(page, SEVEN)
    status = page.locator('[data-testid="job-status"]')
    expect(status).to_have_text("succeeded", timeout=ANSWER_TIMEOUT_MS)
    assert answer(tab, "async") == "7"
    assert any("/predict/mnist?" in url and "async=true" in url for url in tab.requested)
    assert any(re.search(r"/jobs/[0-9a-f-]{36}$", url) for url in tab.requested)
    screenshot(tab, "async")
    assert_only_local(tab)


def test_service_line_and_keyboard_reach(tab: Tab) -> None:
    page = tab.page
    # /ready and /model may not exist on this server yet: then "unknown", never an error.
    workers = page.locator('[data-testid="workers"]')
    expect(workers).to_have_text(
        re.compile(r"^(unknown|ready(, \d+ worker process(es)?)?|not ready.*)$")
    )
    reached = set()
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.dataset.testid"))
    assert {"clear", "file", "async"} <= reached


def test_service_line_reads_ready_and_model(tab: Tab) -> None:
    # Stubbed: these endpoints are newer than the page; the shapes are the agreed ones.
    page = tab.page
    page.route(
        "**/ready",
        lambda route: route.fulfill(
            status=200,
            json={
                "status": "ready",
                "workers": ["a@h/11", "a@h/12", "b@h/21"],
                "processes": 3,
                "nodes": ["a@h", "b@h"],
                "model_version": "abc123",
                "model_versions": ["abc123"],
            },
        ),
    )
    page.route(
        "**/model",
        lambda route: route.fulfill(
            status=200,
            json={
                "version": "abc123",
                "pipeline": "p",
                "test_accuracy": 0.9876,
                "versions": [
                    {"version": "abc123", "workers": ["a@h/11"]},
                    {"version": "def456", "workers": ["a@h/11"], "canary_percent": 10},
                ],
            },
        ),
    )
    page.reload()
    expect(page.locator('[data-testid="workers"]')).to_have_text("ready, 3 worker processes")
    expect(page.locator('[data-testid="model-version"]')).to_have_text(
        "abc123, test accuracy 98.8% · also serving def456 (canary 10%)"
    )
    page.route(
        "**/ready", lambda route: route.fulfill(status=503, json={"detail": "no worker answers"})
    )
    page.reload()
    expect(page.locator('[data-testid="workers"]')).to_have_text("not ready: no worker answers")


def test_a_busy_service_says_so(tab: Tab) -> None:
    page = tab.page
    page.route(
        "**/predict/mnist*",
        lambda route: route.fulfill(
            status=503, headers={"Retry-After": "2"}, json={"detail": "Queue is full."}
        ),
    )
    draw(page, ONE)
    expect(page.locator('[data-testid="error"]')).to_have_text(
        "The service is busy. Try again in 2 s. (Queue is full.)"
    )
    expect(page.locator('[data-testid="prediction"]')).to_have_text(EMPTY)


def test_fits_a_phone_screen(browser: Browser, served: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, has_touch=True)
    try:
        page = context.new_page()
        page.goto(served + "/")
        expect(page.locator('[data-testid="seen"]')).to_be_hidden()
        expect(page.locator('[data-testid="error"]')).to_be_hidden()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        box = page.locator('[data-testid="pad"]').bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 360
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "phone.png", full_page=True)
    finally:
        context.close()
