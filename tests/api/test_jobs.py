"""The job queue (micro-batcher, publisher, listener) against a real ``redis-server``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis.asyncio

from api.job_states import JobRef
from api.jobs import JobQueue
from api.messages import MessageFactory
from api.metrics import Metrics
from api.publisher import Admission, RedisTaskPublisher
from api.results import ResultListener
from api.workers import WorkerDirectory
from shared.errors import QueueFull
from shared.queue import make_celery, result_key_prefix
from shared.settings import Settings
from tests.conftest import RedisServer

T = TypeVar("T")
QUEUE = "jobs-test"  # no worker consumes it: tasks stay queued


def with_jobs(
    server: RedisServer, max_depth: int, scenario: Callable[[JobQueue], Awaitable[T]]
) -> T:
    settings = Settings(redis_url=server.url, queue_name=QUEUE, batch_in_flight=1, batch_hold_ms=50)

    async def go() -> T:
        client = redis.asyncio.Redis.from_url(server.url)
        app = make_celery(settings)
        messages = MessageFactory(app, QUEUE, "test")
        publisher = RedisTaskPublisher(client, messages, Admission(max_depth, 60))
        listener = ResultListener(client, result_key_prefix(app))
        jobs = JobQueue(settings, publisher, listener, WorkerDirectory(client, QUEUE), Metrics())
        try:
            return await asyncio.wait_for(scenario(jobs), 20)
        finally:
            await jobs.stop()
            messages.close()
            await client.aclose()

    return asyncio.run(go())


def test_while_a_task_is_in_flight_uploads_gather_into_one_task(
    private_redis: RedisServer,
) -> None:
    async def scenario(jobs: JobQueue) -> tuple[JobRef, list[JobRef]]:
        first = await jobs.submit(b"first")  # takes the only slot (BATCH_IN_FLIGHT=1)
        gathered = await asyncio.gather(jobs.submit(b"second"), jobs.submit(b"third"))
        return first, list(gathered)  # sent together when BATCH_HOLD_MS ran out

    first, gathered = with_jobs(private_redis, 100, scenario)
    assert {ref.task_id for ref in gathered} != {first.task_id}
    assert len({ref.task_id for ref in gathered}) == 1
    assert [ref.index for ref in gathered] == [0, 1]
    assert private_redis.client().llen(QUEUE) == 2  # two tasks, not three


def test_a_full_queue_refuses_the_upload_and_frees_its_slot(private_redis: RedisServer) -> None:
    async def scenario(jobs: JobQueue) -> int:
        await jobs.submit(b"first")  # the queue is now full (MAX_QUEUE_DEPTH=1)
        jobs.batcher.capacity = 2  # so the next upload goes at once, not after the hold
        with pytest.raises(QueueFull):
            await jobs.submit(b"second")
        return jobs.batcher.in_flight

    assert with_jobs(private_redis, 1, scenario) == 1  # only the first task holds a slot
    assert private_redis.client().llen(QUEUE) == 1
