"""Real-world uploads through the whole service with the real model.

Photos, canvas drawings, large images and typed digits (``worker/realworld.py``) go up as
files to a live API, through Redis, to a worker and back: the accuracy a user gets.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.integration.conftest import Stack
from worker.realworld import make_sets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_SET = 200
TARGETS = {"photo": 0.97, "canvas": 0.97, "large": 0.97, "typed": 0.90}


def test_real_world_sets_through_the_service(stack: Stack, full_model_path, mnist) -> None:
    images, labels = mnist
    queue = f"rw-{uuid.uuid4().hex[:8]}"
    stack.worker("realworld", QUEUE_NAME=queue, MODEL_PATH=str(full_model_path))
    _, base = stack.api(QUEUE_NAME=queue)
    sets = make_sets(images, labels, n=PER_SET, seed=0)
    accuracy = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for name, items in sets.items():
            right = 0
            for start in range(0, len(items), 32):
                chunk = items[start : start + 32]
                files = [("file", (f"{i}", data)) for i, (data, _) in enumerate(chunk)]
                response = client.post("/predict/mnist/batch", files=files)
                assert response.status_code == 200, response.text
                for result, (_, label) in zip(response.json()["results"], chunk, strict=True):
                    right += result["status_code"] == 200 and result["result"]["prediction"] == str(
                        label
                    )
            accuracy[name] = right / len(items)
    print("real-world accuracy through the service:", accuracy)
    for name, target in TARGETS.items():
        assert accuracy[name] >= target, (name, accuracy[name])
