"""The batch endpoint against a live API: it waits once per task, not once per file."""

from __future__ import annotations

import time
import uuid

import httpx
import numpy as np
import pytest

from tests.images import png
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_a_stalled_batch_answers_within_about_one_timeout(
    stack: Stack, digits: list[np.ndarray]
) -> None:
    # No worker consumes this queue: every file's job is still queued when the wait ends.
    _, base = stack.api(QUEUE_NAME=f"stalled-{uuid.uuid4().hex[:8]}", SYNC_TIMEOUT_SECONDS="2")
    files = [("file", (f"{i}.png", png(digits[i % 10]))) for i in range(16)]
    started = time.monotonic()
    response = httpx.post(base + "/predict/mnist/batch", files=files, timeout=60)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    results = response.json()["results"]
    assert [item["status_code"] for item in results] == [504] * 16
    assert elapsed < 6, f"answered after {elapsed:.1f} s (one wait per file would take 32 s)"
