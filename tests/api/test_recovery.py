"""Lost task messages queued again (``api/recovery.py``), against a real ``redis-server``
and kombu's own Redis transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis.asyncio
from kombu import Connection

from api import recovery
from api.messages import MessageFactory
from api.publisher import Admission, RedisTaskPublisher
from api.recovery import Recovery
from shared.queue import SENT_AT_KEY, SENT_KEY, UNACKED_KEY, make_celery
from shared.settings import Settings
from tests.conftest import RedisServer

QUEUE = "recovery-test"
RESULTS = "celery-task-meta-"
T = TypeVar("T")


def run(server: RedisServer, work: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
    async def go() -> T:
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def publish(server: RedisServer, *task_ids: str) -> None:
    async def go(client: redis.asyncio.Redis) -> None:
        app = make_celery(Settings(redis_url=server.url, queue_name=QUEUE))
        factory = MessageFactory(app, QUEUE, "test")
        publisher = RedisTaskPublisher(client, factory, Admission(max_depth=100, ttl_seconds=60))
        for task_id in task_ids:
            kwargs: dict[str, Any] = {"images": [task_id]}
            await publisher.enqueue(task_id, {f"job-{task_id}": f"{task_id}:0"}, kwargs, "s")
        factory.close()

    run(server, go)


def check(server: RedisServer, grace_seconds: float = 0.0) -> list[str]:
    async def go(client: redis.asyncio.Redis) -> list[str]:
        recovery = Recovery(
            client,
            QUEUE,
            result_key_prefix=RESULTS,
            check_seconds=1,
            grace_seconds=grace_seconds,
            ttl_seconds=60,
        )
        return await recovery.check()

    return run(server, go)


def test_a_message_lost_in_a_fetch_goes_back_on_the_queue_once(
    private_redis: RedisServer,
) -> None:
    publish(private_redis, "lost")
    client = private_redis.client()
    message = client.rpop(QUEUE)  # what BRPOP did, before Redis died under kombu's record
    assert check(private_redis, grace_seconds=3600) == []  # too young to be looked at
    assert check(private_redis) == ["lost"]
    assert client.lrange(QUEUE, 0, -1) == [message]  # the very message, once
    assert check(private_redis) == []  # in the queue now: nothing more to do
    assert client.llen(QUEUE) == 1


def test_a_message_a_worker_holds_or_the_queue_has_is_left_alone(
    private_redis: RedisServer,
) -> None:
    publish(private_redis, "held", "waiting")
    client = private_redis.client()
    # kombu fetches the older one as a worker does, unacknowledged: it records it under
    # the delivery tag the publisher wrote, in the hash recovery reads (the contract).
    with Connection(private_redis.url) as connection:
        queue = connection.SimpleQueue(QUEUE)
        held = queue.get(timeout=5)
        assert json.loads(held.body.decode() if isinstance(held.body, bytes) else held.body)
        assert client.hexists(UNACKED_KEY, held.delivery_tag)
        assert check(private_redis) == []
        assert client.llen(QUEUE) == 1  # "waiting", not put back a second time
        client.set(RESULTS + "held", "{}")  # the worker stores the result, then acks
        held.ack()
        queue.close()
    assert check(private_redis) == []
    assert client.hkeys(SENT_KEY) == [b"waiting"]  # the answered one's copy is gone
    assert client.zrange(SENT_AT_KEY, 0, -1) == [b"waiting"]


def test_a_copy_whose_jobs_expired_is_dropped_not_queued(private_redis: RedisServer) -> None:
    publish(private_redis, "old")
    client = private_redis.client()
    client.rpop(QUEUE)
    client.zadd(SENT_AT_KEY, {"old": 0})  # sent long before its jobs' 60 s ran out
    assert check(private_redis) == []
    assert client.llen(QUEUE) == 0
    assert client.hlen(SENT_KEY) == 0 and client.zcard(SENT_AT_KEY) == 0


def test_the_api_looks_in_the_background_and_counts(private_redis: RedisServer) -> None:
    publish(private_redis, "lost")
    client = private_redis.client()
    client.rpop(QUEUE)
    counted: list[int] = []

    async def go(aio: redis.asyncio.Redis) -> None:
        # Wait for the count, not the queue: the message is back on the queue before the
        # look that put it there counts it, and stopping in between would lose the count.
        requeued = asyncio.Event()

        def count(n: int) -> None:
            counted.append(n)
            requeued.set()

        recovery = Recovery(
            aio,
            QUEUE,
            result_key_prefix=RESULTS,
            check_seconds=0.05,
            grace_seconds=0,
            ttl_seconds=60,
            on_requeued=count,
        )
        recovery.start()
        try:
            await asyncio.wait_for(requeued.wait(), 10)
        finally:
            await recovery.stop()

    run(private_redis, go)
    assert counted == [1]
    assert client.llen(QUEUE) == 1


def test_copies_of_answered_tasks_go_in_one_look_batch_after_batch(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "BATCH", 3)
    tasks = [f"answered-{i}" for i in range(8)]
    publish(private_redis, *tasks, "waiting")
    client = private_redis.client()
    for task_id in tasks:
        client.set(RESULTS + task_id, "{}")
    client.ltrim(QUEUE, 0, 0)  # the workers took all but the newest, "waiting"
    assert check(private_redis) == []
    assert client.hkeys(SENT_KEY) == [b"waiting"]  # 8 copies dropped, 3 at a time


def test_a_message_kombu_put_back_is_not_queued_twice(private_redis: RedisServer) -> None:
    # A rejected or requeued task, a dead worker's or a stopping worker's: kombu restores
    # it re-serialised, flagged as redelivered, and drops its unacked record.
    publish(private_redis, "restored")
    client = private_redis.client()
    sent = client.lindex(QUEUE, 0)
    with Connection(private_redis.url) as connection:
        queue = connection.SimpleQueue(QUEUE)
        queue.get(timeout=5).requeue()
        queue.close()
    [back] = client.lrange(QUEUE, 0, -1)
    assert back != sent and json.loads(back)["headers"]["redelivered"] is True
    assert client.hlen(UNACKED_KEY) == 0
    assert check(private_redis) == []  # found in the form kombu gave it
    assert client.llen(QUEUE) == 1


def test_a_copy_without_a_delivery_tag_is_dropped_not_fatal(private_redis: RedisServer) -> None:
    publish(private_redis, "good")
    client = private_redis.client()
    client.rpop(QUEUE)
    client.hset(SENT_KEY, "bad", "no tag here")
    client.zadd(SENT_AT_KEY, {"bad": client.time()[0] * 1000 - 1000})  # young, not expired
    assert check(private_redis) == ["good"]  # the bad copy does not stop the good one
    assert client.hkeys(SENT_KEY) == [b"good"]
