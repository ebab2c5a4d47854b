"""The Redis publisher against a real ``redis-server``: what it admits, what it refuses."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from api.messages import MessageFactory
from api.publisher import Admission, RedisTaskPublisher
from bench.procs import wait_until
from shared.errors import QueueFull, QueueOutOfMemory, ReplicasUnavailable, ReplicationTimeout
from shared.queue import JOB_KEY_PREFIX, SENT_AT_KEY, SENT_KEY, make_celery
from shared.settings import Settings
from tests.conftest import RedisServer, start_private_redis

QUEUE = "publisher-test"


def enqueue(server: RedisServer, admission: Admission, job: str = "job-1", size: int = 10) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(server.url)
        app = make_celery(Settings(redis_url=server.url, queue_name=QUEUE))
        try:
            publisher = RedisTaskPublisher(client, MessageFactory(app, QUEUE, "test"), admission)
            kwargs: dict[str, Any] = {"images": ["x" * size]}
            await publisher.enqueue(f"task-{job}", {job: f"task-{job}:0"}, kwargs, "summary")
        finally:
            await client.aclose()

    asyncio.run(go())


def stored(server: RedisServer) -> tuple[int, list[bytes]]:
    """The queue's length and the job records; checks that the kept copies match the
    queued tasks (a refused job leaves no copy either)."""
    client = server.client()
    sent = sorted(client.hkeys(SENT_KEY))
    assert sent == sorted(client.zrange(SENT_AT_KEY, 0, -1))
    depth, jobs = int(client.llen(QUEUE)), sorted(client.keys(JOB_KEY_PREFIX + "*"))
    assert sent == sorted(b"task-" + key.removeprefix(JOB_KEY_PREFIX.encode()) for key in jobs)
    return depth, jobs


@pytest.fixture
def clean(private_redis: RedisServer) -> Iterator[RedisServer]:
    yield private_redis
    private_redis.client().config_set("maxmemory", "512mb")


def test_a_job_is_queued_with_its_record(clean: RedisServer) -> None:
    enqueue(clean, Admission(max_depth=10, ttl_seconds=60))
    client = clean.client()
    message = json.loads(client.lindex(QUEUE, 0))
    assert message["headers"]["id"] == "task-job-1"
    assert client.get(JOB_KEY_PREFIX + "job-1") == b"task-job-1:0"
    assert 0 < client.ttl(JOB_KEY_PREFIX + "job-1") <= 60
    # a copy kept until the result exists, for api/recovery.py
    tag = message["properties"]["delivery_tag"].encode()
    assert client.hget(SENT_KEY, "task-job-1") == tag + b"\n" + client.lindex(QUEUE, 0)
    assert client.zscore(SENT_AT_KEY, "task-job-1") is not None


def test_a_full_queue_refuses_and_writes_nothing(clean: RedisServer) -> None:
    enqueue(clean, Admission(max_depth=1, ttl_seconds=60), "first")
    with pytest.raises(QueueFull):
        enqueue(clean, Admission(max_depth=1, ttl_seconds=60), "second")
    assert stored(clean) == (1, [JOB_KEY_PREFIX.encode() + b"first"])


def test_near_maxmemory_new_jobs_are_refused_and_nothing_is_written(clean: RedisServer) -> None:
    client = clean.client()
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", int((used + 200_000) / 0.9))  # 90%: 200 kB from here
    rules = Admission(max_depth=100, ttl_seconds=60, memory_high_water=0.9)
    enqueue(clean, rules, "small", size=1_000)  # well under 90%: accepted
    with pytest.raises(QueueOutOfMemory):
        enqueue(clean, rules, "large", size=150_000)  # would pass 90% of the limit
    assert stored(clean) == (1, [JOB_KEY_PREFIX.encode() + b"small"])


def test_over_maxmemory_redis_own_refusal_is_a_503_too(clean: RedisServer) -> None:
    clean.client().config_set("maxmemory", 1)  # every write refused by Redis itself
    with pytest.raises(QueueOutOfMemory):
        enqueue(clean, Admission(max_depth=100, ttl_seconds=60, memory_high_water=1.0))
    clean.client().config_set("maxmemory", "512mb")
    assert stored(clean) == (0, [])


def test_without_the_replicas_it_asks_for_a_job_is_refused_and_not_written(
    clean: RedisServer,
) -> None:
    rules = Admission(max_depth=10, ttl_seconds=60, min_replicas=1, replica_timeout_ms=50)
    with pytest.raises(ReplicasUnavailable):
        enqueue(clean, rules)
    assert stored(clean) == (0, [])


def test_a_replica_too_slow_to_confirm_is_a_503_yet_the_job_is_queued(
    clean: RedisServer, tmp_path: Path
) -> None:
    replica = start_private_redis(
        tmp_path / "replica", None, "--replicaof", "127.0.0.1", str(clean.port)
    )
    assert replica is not None and replica.process is not None
    rules = Admission(max_depth=10, ttl_seconds=60, min_replicas=1, replica_timeout_ms=100)
    wait_until(lambda: clean.client().info("replication")["connected_slaves"] == 1, 10, "sync")
    replica.process.send(signal.SIGSTOP)  # connected, but it confirms nothing
    try:
        with pytest.raises(ReplicationTimeout):
            enqueue(clean, rules)
    finally:
        replica.process.send(signal.SIGCONT)
        replica.stop()
    # At least once: the client was told 503, but the job is in the queue and will run.
    assert stored(clean) == (1, [JOB_KEY_PREFIX.encode() + b"job-1"])


def test_with_a_replica_the_job_waits_for_it_and_survives_a_flushed_script_cache(
    clean: RedisServer, tmp_path: Path
) -> None:
    replica = start_private_redis(
        tmp_path / "replica", None, "--replicaof", "127.0.0.1", str(clean.port)
    )
    assert replica is not None
    try:
        rules = Admission(max_depth=10, ttl_seconds=60, min_replicas=1, replica_timeout_ms=5000)
        enqueue(clean, rules, "first")
        clean.client().script_flush()  # as on a newly promoted master: NOSCRIPT, then load
        enqueue(clean, rules, "second")
        # WAIT returned: the replica holds both jobs already, no polling needed.
        assert replica.client().llen(QUEUE) == 2
        assert replica.client().get(JOB_KEY_PREFIX + "second") == b"task-second:0"
    finally:
        replica.stop()
