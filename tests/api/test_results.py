"""The result listener and the job store against a real ``redis-server`` (restarts too)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio

from api.job_states import JobRef
from api.job_store import JobStore
from api.results import ResultListener
from shared.queue import ATTEMPTS_KEY_PREFIX, JOB_KEY_PREFIX
from shared.schemas import JobState
from tests.conftest import RedisServer

T = TypeVar("T")
PREFIX = "celery-task-meta-"
ANSWER = {"prediction": "7", "confidence": 0.9, "top3": [{"digit": "7", "probability": 0.9}]}


def meta(status: str = "SUCCESS") -> str:
    result = {"items": [{"prediction": ANSWER, "error": None}], "model_version": "m", "worker": "w"}
    return json.dumps({"status": status, "result": result, "task_id": "t"})


def with_listener(
    server: RedisServer, scenario: Callable[[ResultListener, redis.asyncio.Redis], Awaitable[T]]
) -> T:
    async def go() -> T:
        client = redis.asyncio.Redis.from_url(server.url, socket_connect_timeout=1)
        listener = ResultListener(client, PREFIX)
        listener.start()
        try:
            await asyncio.wait_for(listener.connected.wait(), 5)
            return await asyncio.wait_for(scenario(listener, client), 30)
        finally:
            await listener.stop()
            await client.aclose()

    return asyncio.run(go())


def store_result(server: RedisServer, task_id: str) -> None:
    client = server.client()
    client.set(PREFIX + task_id, meta())
    client.publish(PREFIX + task_id, meta())  # what Celery's Redis backend does


def test_a_published_result_ends_the_wait(private_redis: RedisServer) -> None:
    async def scenario(listener: ResultListener, _: Any) -> dict[str, Any] | None:
        waiting = asyncio.create_task(listener.wait("t-published", 10))
        await asyncio.sleep(0)  # the wait registers itself
        await asyncio.to_thread(store_result, private_redis, "t-published")
        return await waiting

    found = with_listener(private_redis, scenario)
    assert found is not None and found["status"] == "SUCCESS"


def test_a_result_stored_before_the_wait_is_read_from_its_key(
    private_redis: RedisServer,
) -> None:
    store_result(private_redis, "t-early")
    found = with_listener(private_redis, lambda listener, _: listener.wait("t-early", 5))
    assert found is not None and found["status"] == "SUCCESS"


def test_a_wait_with_no_result_ends_at_its_deadline(private_redis: RedisServer) -> None:
    async def scenario(listener: ResultListener, _: Any) -> tuple[Any, float]:
        started = time.monotonic()
        found = await listener.wait("t-never", 0.3)
        return found, time.monotonic() - started

    found, waited = with_listener(private_redis, scenario)
    assert found is None
    assert 0.3 <= waited < 3


def test_after_a_redis_restart_the_listener_reconnects(private_redis: RedisServer) -> None:
    async def scenario(listener: ResultListener, _: Any) -> dict[str, Any] | None:
        await asyncio.to_thread(private_redis.stop)
        while listener.connected.is_set():  # it notices the loss
            await asyncio.sleep(0.01)
        await asyncio.to_thread(private_redis.start)
        await listener.connected.wait()  # and subscribes again
        waiting = asyncio.create_task(listener.wait("t-after", 10))
        await asyncio.sleep(0)
        await asyncio.to_thread(store_result, private_redis, "t-after")
        return await waiting

    found = with_listener(private_redis, scenario)
    assert found is not None and found["status"] == "SUCCESS"


def test_the_job_store_reads_queued_running_and_done_jobs(private_redis: RedisServer) -> None:
    client = private_redis.client()
    for job, task in (("j-queued", "t-q"), ("j-running", "t-r"), ("j-done", "t-d")):
        client.set(JOB_KEY_PREFIX + job, JobRef(job, task, 0).record)
    client.set(ATTEMPTS_KEY_PREFIX + "t-r", 1)  # a worker took it
    client.set(PREFIX + "t-d", meta())

    async def statuses() -> list[Any]:
        redis_client = redis.asyncio.Redis.from_url(private_redis.url)
        store = JobStore(redis_client, PREFIX)
        try:
            found = [await store.status(job) for job in ("j-queued", "j-running", "j-done")]
            try:
                await store.status("j-unknown")
            except Exception as exc:  # noqa: BLE001 - the test reports what it got
                found.append(exc)
            return found
        finally:
            await redis_client.aclose()

    queued, running, done, unknown = asyncio.run(statuses())
    assert (queued.status, running.status, done.status) == (
        JobState.queued,
        JobState.running,
        JobState.succeeded,
    )
    assert done.result is not None and done.result.prediction == "7"
    assert getattr(unknown, "status_code", None) == 404
