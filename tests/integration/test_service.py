"""The whole path with real processes: uvicorn -> Redis -> a Celery worker -> back."""

from __future__ import annotations

import time
import uuid

import httpx
import numpy as np
import pytest

from tests.images import png
from tests.integration.conftest import Stack, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(stack: Stack) -> str:
    queue = f"it-{uuid.uuid4().hex[:8]}"
    stack.worker("main", QUEUE_NAME=queue)
    _, base = stack.api(QUEUE_NAME=queue)
    return base


def post(base: str, data: bytes, **params: str) -> httpx.Response:
    return httpx.post(
        base + "/predict/mnist", params=params, files={"file": ("d.png", data)}, timeout=30
    )


def test_sync_predictions_over_http(served: str, mnist: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist
    correct = 0
    for i in range(40):
        response = post(served, png(images[i]))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["worker"].startswith("main@")
        correct += body["prediction"] == str(labels[i])
    assert correct >= 36


def test_async_submission_and_polling(served: str, mnist: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist
    jobs = []
    for i in range(20):
        response = post(served, png(images[100 + i]), **{"async": "true"})
        assert response.status_code == 202
        jobs.append((response.headers["location"], str(labels[100 + i])))
    correct = 0
    for url, label in jobs:
        status: dict = {}

        def done(url: str = url) -> bool:
            nonlocal status
            status = httpx.get(served + url, timeout=5).json()
            return status["status"] in ("succeeded", "failed")

        wait_until(done, 20, f"job {url}")
        assert status["status"] == "succeeded", status
        correct += status["result"]["prediction"] == label
    assert correct >= 17


def test_bad_input_is_rejected_by_the_api(served: str) -> None:
    response = post(served, b"definitely not an image")
    assert response.status_code == 400
    assert response.json() == {"detail": "File provided is not an image."}
    assert httpx.get(served + f"/jobs/{uuid.uuid4()}", timeout=5).status_code == 404


def test_sync_timeout_is_504_and_the_job_survives(
    stack: Stack, mnist: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist
    queue = f"it-orphan-{uuid.uuid4().hex[:8]}"
    _, base = stack.api(QUEUE_NAME=queue, SYNC_TIMEOUT_SECONDS="1")
    started = time.monotonic()
    response = post(base, png(images[7]))
    assert response.status_code == 504
    assert time.monotonic() - started < 5
    body = response.json()
    assert body["status_url"] == f"/jobs/{body['job_id']}"
    assert httpx.get(base + body["status_url"], timeout=5).json()["status"] == "queued"

    # A worker that comes later picks the job up: nothing was lost.
    stack.worker("late", QUEUE_NAME=queue)
    final: dict = {}

    def done() -> bool:
        nonlocal final
        final = httpx.get(base + body["status_url"], timeout=5).json()
        return final["status"] == "succeeded"

    wait_until(done, 30, "the timed-out job")
    assert final["result"]["prediction"] == str(labels[7])
