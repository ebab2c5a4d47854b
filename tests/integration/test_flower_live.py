"""Flower, started as the README says (``celery -A worker.celery_app flower``), shows our
workers and the tasks the API sent, once the workers send task events (``TASK_EVENTS``)."""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx
import numpy as np
import pytest

from bench.procs import Proc, free_port, wait_until
from tests.images import png
from tests.integration.conftest import Stack, predict

pytestmark = pytest.mark.integration


def _get(base: str, path: str) -> Any:
    try:
        response = httpx.get(base + path, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_flower_shows_the_workers_and_the_tasks_they_ran(
    stack: Stack, digits: list[np.ndarray]
) -> None:
    stack.worker("flowered", TASK_EVENTS="true")
    _, base = stack.api()
    port = free_port()
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower"]
    # Events come from the workers' own setting; Flower must not switch them on itself.
    args += [f"--port={port}", "--address=127.0.0.1", "--enable_events=false"]
    # Its HTTP API (what this test reads) needs authentication unless told otherwise.
    flower = Proc(
        "flower", args, stack.env(FLOWER_UNAUTHENTICATED_API="true"), stack.folder / "flower.log"
    ).start()
    stack.processes.append(flower)
    flower_url = f"http://127.0.0.1:{port}"
    wait_until(lambda: bool(_get(flower_url, "/api/workers")) or not flower.alive(), 60, "flower")
    assert flower.alive(), flower.log()
    workers = _get(flower_url, "/api/workers")
    assert any(name.startswith("flowered@") for name in workers), workers

    # Flower subscribes to the events a moment after it answers: until one of our tasks
    # shows, send another each second (each with a request id of its own).
    sent: list[str] = []
    last_sent = [0.0]

    def our_task() -> dict[str, Any] | None:
        tasks = _get(flower_url, "/api/tasks") or {}
        for task in tasks.values():
            if any(rid in str(task.get("kwargs")) for rid in sent) and task["state"] == "SUCCESS":
                return dict(task)
        return None

    def shown() -> bool:
        if our_task() is not None:
            return True
        if time.monotonic() - last_sent[0] >= 1.0:
            sent.append(f"seen-in-flower-{len(sent)}")
            predict(base, png(digits[7]), request_id=sent[-1])
            last_sent[0] = time.monotonic()
        return False

    wait_until(shown, 30, "a task in flower")
    task = our_task()
    assert task is not None
    assert task["name"] == "mnist.predict"
    assert str(task["worker"]).startswith("flowered@")
    assert "<1 images>" in str(task["kwargs"])  # the summary, never the image's bytes
