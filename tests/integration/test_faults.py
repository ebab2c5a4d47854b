"""Faults with real processes: killed workers, poison tasks, Redis restarts, SIGTERM."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from shared.queue import ATTEMPTS_KEY_PREFIX, JOB_KEY_PREFIX
from tests.images import png
from tests.integration.conftest import (
    Proc,
    RedisServer,
    Stack,
    job,
    submit,
    wait_all_done,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def faulty_png(array: np.ndarray, fault: str) -> bytes:
    info = PngInfo()
    info.add_text("fault", fault)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def task_of(client: redis.Redis, job_id: str) -> str:
    """The id of the task carrying a job (its record is ``<task id>:<index>``)."""
    record = client.get(JOB_KEY_PREFIX + job_id)
    assert record is not None, job_id
    return record.decode().rpartition(":")[0]


def deliveries(client: redis.Redis, task_id: str) -> int:
    """How many times a worker has started the task (it counts each delivery)."""
    return int(client.get(ATTEMPTS_KEY_PREFIX + task_id) or 0)


def finished_by(process: Proc, task_id: str) -> list[int]:
    """The attempts at ``task_id`` that ``process`` logged as done."""
    attempts = []
    for line in process.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "task done" and entry.get("task_id") == task_id:
            attempts.append(entry["attempt"])
    return attempts


def test_sigkill_of_a_busy_worker_loses_no_job(stack: Stack, mnist) -> None:
    images, labels = mnist
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    fast = {
        "QUEUE_NAME": queue,
        "VISIBILITY_TIMEOUT_SECONDS": "6",
        "TASK_TIME_LIMIT_SECONDS": "5",
        "TASK_SOFT_TIME_LIMIT_SECONDS": "4",
    }
    victim = stack.worker("victim", faults=True, **fast)
    survivor = stack.worker("survivor", faults=True, **fast)
    _, base = stack.api(BATCH_WINDOW_MS="0", **fast)
    client = stack.redis.client()
    picks = list(range(1000, 1200))
    job_ids = [submit(base, png(images[i])) for i in picks[:100]]
    # Two slow tasks (seconds each): with one process and a prefetch of one, each worker
    # takes one and holds it, unacknowledged, while it runs. Once both have started, the
    # victim is certainly in the middle of one.
    slow_jobs = [submit(base, faulty_png(images[i], "slow")) for i in picks[100:102]]
    slow_tasks = [task_of(client, j) for j in slow_jobs]
    assert len(set(slow_tasks)) == 2
    wait_until(
        lambda: all(deliveries(client, t) for t in slow_tasks), 20, "both slow tasks to start"
    )
    victim.send(signal.SIGKILL)  # it holds a task it will never ack
    victim.popen.wait()
    job_ids += slow_jobs + [submit(base, png(images[i])) for i in picks[102:]]

    done = wait_all_done(base, job_ids, timeout=90)
    assert all(s["status"] == "succeeded" for s in done.values()), [
        s for s in done.values() if s["status"] != "succeeded"
    ][:3]
    correct = sum(
        done[j]["result"]["prediction"] == str(labels[i])
        for j, i in zip(job_ids, picks, strict=True)
    )
    assert correct >= 180
    # The victim's task went back to the queue (after the visibility timeout) and the
    # survivor ran it again: a second delivery, which only a worker dying holding it
    # explains. The survivor's own slow task was delivered once.
    wait_until(lambda: any(deliveries(client, t) == 2 for t in slow_tasks), 30, "a second delivery")
    held = next(t for t in slow_tasks if deliveries(client, t) == 2)
    kept = next(t for t in slow_tasks if t != held)
    assert deliveries(client, kept) == 1
    wait_until(lambda: 2 in finished_by(survivor, held), 15, "the survivor to finish it")
    assert finished_by(survivor, held) == [2]
    assert survivor.alive()


def test_a_poison_task_is_given_up_and_blocks_nothing(stack: Stack, digits) -> None:
    queue = f"poison-{uuid.uuid4().hex[:8]}"
    stack.worker("poisoned", faults=True, QUEUE_NAME=queue, TASK_MAX_RETRIES="2")
    _, base = stack.api(QUEUE_NAME=queue, BATCH_WINDOW_MS="0")
    poison = submit(base, faulty_png(digits[4], "crash"))
    others = [submit(base, png(digits[d])) for d in range(10)]
    done = wait_all_done(base, [poison, *others], timeout=90)
    assert done[poison]["status"] == "failed"
    assert "abandoned after 3 attempts" in done[poison]["error"]["detail"]
    assert [done[j]["result"]["prediction"] for j in others].count(None) == 0
    assert sum(done[j]["result"]["prediction"] == str(d) for d, j in enumerate(others)) >= 9


def test_sigterm_lets_a_busy_worker_finish_its_task(stack: Stack, digits) -> None:
    queue = f"term-{uuid.uuid4().hex[:8]}"
    worker = stack.worker("term", faults=True, QUEUE_NAME=queue)
    _, base = stack.api(QUEUE_NAME=queue)
    slow = submit(base, faulty_png(digits[9], "slow"))
    wait_until(lambda: job(base, slow)["status"] == "running", 10, "the slow job to start")
    worker.send(signal.SIGTERM)
    assert worker.popen.wait(timeout=30) == 0
    final = job(base, slow)
    assert final["status"] == "succeeded"
    assert final["result"]["prediction"] == "9"


def test_redis_restart_during_sync_traffic(
    stack: Stack, private_redis: RedisServer, digits
) -> None:
    stack_env = {"REDIS_URL": private_redis.url, "SYNC_TIMEOUT_SECONDS": "3"}
    stack.worker("restart", **stack_env)
    _, base = stack.api(**stack_env)
    results: list[tuple[float, float, int]] = []  # (sent at, seconds taken, status)
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status = client.post(
                        base + "/predict/mnist", files={"file": ("d.png", png(digits[2]))}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                results.append((started, time.monotonic() - started, status))
                time.sleep(0.02)  # pacing: steady traffic, not a flood

    def answered(since: float, count: int) -> bool:
        """At least ``count`` requests sent after ``since`` have been answered."""
        return sum(t > since for t, _, _ in list(results)) >= count

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        wait_until(lambda: answered(0, 10), 20, "traffic before the outage")
        down_at = time.monotonic()
        private_redis.stop()
        # An outage long enough for a run of requests to meet it; each must be a quick 503.
        wait_until(lambda: answered(down_at + 0.5, 10), 20, "requests during the outage")
        up_at = time.monotonic()
        private_redis.start()
        wait_until(lambda: any(s == 200 and t > up_at for t, _, s in results), 20, "recovery")
        recovered_at = min(t + d for t, d, s in results if s == 200 and t > up_at)
        wait_until(lambda: answered(recovered_at, 10), 20, "traffic after recovery")
    finally:
        stop.set()
        thread.join()
    before = [s for t, _, s in results if t < down_at - 0.1]
    during = [(d, s) for t, d, s in results if down_at + 0.5 < t < up_at]
    assert before and set(before) == {200}
    assert during, "requests were sent while Redis was down"
    assert {s for _, s in during} <= {503}, during
    assert max(d for d, _ in during) < 2.5  # quick 503s, no hangs
    assert recovered_at - up_at < 15
    after = [s for t, _, s in results if t > recovered_at]
    assert after and set(after) == {200}


def test_worker_and_api_started_before_redis(stack: Stack, tmp_path: Path, digits) -> None:
    from tests.integration.conftest import free_port, start_private_redis

    port = free_port()
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    worker = stack.worker("early", wait=False, **env)
    _, base = stack.api(**env)
    assert httpx.get(base + "/health", timeout=2).status_code == 200
    refused = httpx.post(
        base + "/predict/mnist", files={"file": ("d.png", png(digits[6]))}, timeout=5
    )
    assert refused.status_code == 503
    assert httpx.get(base + "/ready", timeout=3).status_code == 503

    def retried() -> bool:
        return worker.log().count("Cannot connect to redis") >= 2 or not worker.alive()

    # A second failed attempt to connect: the worker waits for Redis rather than dying.
    wait_until(retried, 20, "the worker to try Redis again")
    assert worker.alive(), worker.log()

    server = start_private_redis(tmp_path / "late-redis", port=port)
    assert server is not None
    try:
        stack.wait_ready(worker, timeout=60)
        wait_until(lambda: httpx.get(base + "/ready", timeout=3).status_code == 200, 20, "ready")
        answer = httpx.post(
            base + "/predict/mnist", files={"file": ("d.png", png(digits[6]))}, timeout=10
        )
        assert answer.status_code == 200
        assert answer.json()["prediction"] == "6"
    finally:
        worker.stop()
        server.stop()


def test_sigterm_lets_the_api_finish_requests_in_flight(stack: Stack, digits) -> None:
    queue = f"apiterm-{uuid.uuid4().hex[:8]}"
    stack.worker("apiterm", faults=True, QUEUE_NAME=queue)
    api, base = stack.api(QUEUE_NAME=queue)
    answer: dict = {}

    def slow_request() -> None:
        response = httpx.post(
            base + "/predict/mnist",
            files={"file": ("d.png", faulty_png(digits[8], "slow"))},
            timeout=30,
        )
        answer["status"] = response.status_code
        answer["body"] = response.json()

    redis_client = stack.redis.client()

    def started() -> set[bytes]:
        return set(redis_client.scan_iter(match=ATTEMPTS_KEY_PREFIX + "*"))

    before = started()
    client = threading.Thread(target=slow_request)
    client.start()
    # The request is in flight once the worker has started its (slow) task.
    wait_until(lambda: bool(started() - before), 10, "the slow job to start")
    api.send(signal.SIGTERM)
    client.join(timeout=30)
    assert answer["status"] == 200
    assert answer["body"]["prediction"] == "8"
    # uvicorn re-raises the signal once its graceful shutdown is complete.
    assert api.popen.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "Finished server process" in api.log()
