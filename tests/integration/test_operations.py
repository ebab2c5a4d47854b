"""Operability against real processes: probes, request ids, back-pressure, metrics."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.images import png
from tests.integration.conftest import Stack, wait_until

pytestmark = pytest.mark.integration


def post(
    base: str, data: bytes, headers: dict[str, str] | None = None, **params: str
) -> httpx.Response:
    return httpx.post(
        base + "/predict/mnist",
        params=params,
        files={"file": ("d.png", data)},
        headers=headers,
        timeout=30,
    )


def test_readiness_follows_the_workers(stack: Stack, digits: list[np.ndarray]) -> None:
    queue = f"ops-{uuid.uuid4().hex[:8]}"
    _, base = stack.api(QUEUE_NAME=queue)

    def not_ready() -> bool:
        response = httpx.get(base + "/ready", timeout=2)
        workers = response.json().get("workers", []) if response.status_code == 200 else []
        return not any(w.startswith("ready@") for w in workers)

    assert not_ready(), "no worker has been started yet"
    worker = stack.worker("ready", QUEUE_NAME=queue)

    def ready() -> bool:
        response = httpx.get(base + "/ready", timeout=2)
        return response.status_code == 200 and any(
            w.startswith("ready@") for w in response.json()["workers"]
        )

    wait_until(ready, 10, "readiness")
    model = httpx.get(base + "/model", timeout=2).json()
    assert model["pipeline"].endswith("SGDClassifier")
    assert any(w.startswith("ready@") for w in model["workers"])

    # Request ids follow the job into the worker's log.
    request_id = f"it-{uuid.uuid4().hex}"
    response = post(base, png(digits[3]), headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id

    def logged() -> bool:
        for line in Path(worker.log_path).read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "task done" and request_id in entry.get("request_ids", []):
                return True
        return False

    wait_until(logged, 5, "the request id in the worker's log")

    worker.stop()
    wait_until(not_ready, 10, "readiness to notice the worker is gone")


def test_back_pressure_with_a_tiny_queue(stack: Stack, digits: list[np.ndarray]) -> None:
    queue = f"bp-{uuid.uuid4().hex[:8]}"  # nobody consumes it: jobs pile up
    _, base = stack.api(QUEUE_NAME=queue, MAX_QUEUE_DEPTH="3", BATCH_WINDOW_MS="0")
    statuses = [post(base, png(digits[1]), **{"async": "true"}).status_code for _ in range(6)]
    assert statuses[:3] == [202, 202, 202]
    assert statuses[3:] == [503, 503, 503]
    refused = post(base, png(digits[1]))
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "Too many jobs" in refused.json()["detail"]
    families = {
        f.name: f for f in text_string_to_metric_families(httpx.get(base + "/metrics").text)
    }
    assert families["mnist_queue_depth"].samples[0].value == 3
    rejected = {
        s.labels["reason"]: s.value
        for s in families["mnist_rejected_jobs"].samples
        if s.name.endswith("_total")
    }
    assert rejected["queue_full"] == 4
    stack.redis.client().delete(queue)  # the jobs this test piled up


def test_metrics_add_up_across_api_processes(
    stack: Stack, digits: list[np.ndarray], tmp_path: Path
) -> None:
    queue = f"mp-{uuid.uuid4().hex[:8]}"
    stack.worker("mp", QUEUE_NAME=queue)
    _, base = stack.api(QUEUE_NAME=queue, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), API_PROCESSES="2")
    # A new connection per request (one kept-alive connection stays with one process), and
    # enough of them that the kernel has handed some to each process.
    sent = 0

    def pids() -> set[str]:
        return {p.name.split("_")[-1] for p in tmp_path.glob("*.db")}

    while sent < 24 or (len(pids()) < 2 and sent < 400):
        data = png(digits[sent % 10])
        response = httpx.post(
            base + "/predict/mnist",
            files={"file": ("d.png", data)},
            headers={"Connection": "close"},
            timeout=30,
        )
        assert response.status_code == 200
        sent += 1
    assert len(pids()) >= 2, "both API processes should have written samples"
    # Whichever process answers the scrape, it reports the sum over both.
    for _ in range(4):
        text = httpx.get(base + "/metrics", timeout=5).text
        total = sum(
            s.value
            for f in text_string_to_metric_families(text)
            if f.name == "mnist_http_requests"
            for s in f.samples
            if s.name == "mnist_http_requests_total" and s.labels.get("route") == "/predict/mnist"
        )
        assert total == sent
