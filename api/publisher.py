"""Putting tasks on the queue.

``RedisTaskPublisher`` is what the API uses with Redis. Celery's own publisher (kombu) is
synchronous, so from an async API every send would need a thread hop, and it would take a
second round trip for the back-pressure check and the job records. Instead, one small Lua
script does it all atomically, in one round trip, without leaving the event loop: refuse if
the queue is full or Redis nears its ``maxmemory``, record the job ids, keep a copy of the
message until its result exists (``api/recovery.py``), push the task.

Memory: Redis runs with ``noeviction``, so at its limit it refuses every write, the workers'
results included, and accepted jobs would stall. The script refuses new jobs earlier, at
``REDIS_MEMORY_HIGH_WATER`` of ``maxmemory``, keeping the rest for the jobs already accepted.

Replicas: with ``REDIS_MIN_REPLICAS`` the script first refuses, writing nothing, while fewer
replicas are connected (after a failover that leaves none, say), and then it and a ``WAIT``
go in one pipeline (``WAIT`` counts the writes of its own connection), so a job is on that
many replicas before the API answers for it, and a failover cannot lose it.

The message is Celery's task protocol 2 exactly as kombu's Redis transport stores it,
built by Celery and kombu themselves (``api/messages.py``), pushed on the list named
after the queue: what ``celery.send_task`` would write, which the worker consumes
unchanged.

``CeleryTaskPublisher`` sends through Celery itself; embedded mode uses it, where tasks
run eagerly inside the API process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, OutOfMemoryError, RedisError

from api.messages import MessageFactory
from shared.errors import (
    BrokerUnavailable,
    QueueFull,
    QueueOutOfMemory,
    ReplicasUnavailable,
    ReplicationTimeout,
)
from shared.queue import JOB_KEY_PREFIX, SENT_AT_KEY, SENT_KEY
from shared.schemas import TASK_PREDICT

# KEYS: the queue, the sent messages and their times (``api/recovery.py``), then one key
# per job. ARGV: max depth, ttl, message, memory high water (a share of maxmemory), replicas
# required, the task id, the message's delivery tag, then the job values. The copy is kept
# as "<delivery tag>\n<message>", so recovery reads the tag without parsing the message.
# Returns the depth, or -1 (queue full), -2 (memory), -3 (too few replicas connected): then
# nothing is written.
ENQUEUE_SCRIPT = """
local depth = redis.call('LLEN', KEYS[1])
if depth >= tonumber(ARGV[1]) then return -1 end
local high_water = tonumber(ARGV[4])
if high_water < 1 then
  local info = redis.call('INFO', 'memory')
  local limit = tonumber(string.match(info, 'maxmemory:(%d+)'))
  if limit and limit > 0 then
    local used = tonumber(string.match(info, 'used_memory:(%d+)'))
    if used + 3 * string.len(ARGV[3]) > limit * high_water then return -2 end
  end
end
local replicas = tonumber(ARGV[5])
if replicas > 0 then
  local info = redis.call('INFO', 'replication')
  if tonumber(string.match(info, 'connected_slaves:(%d+)') or 0) < replicas then return -3 end
end
for i = 4, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 4], 'EX', ARGV[2])
end
local now = redis.call('TIME')
redis.call('HSET', KEYS[2], ARGV[6], ARGV[7] .. '\\n' .. ARGV[3])
redis.call('ZADD', KEYS[3], now[1] * 1000 + math.floor(now[2] / 1000), ARGV[6])
redis.call('LPUSH', KEYS[1], ARGV[3])
return depth
"""
QUEUE_FULL = -1
OUT_OF_MEMORY = -2
TOO_FEW_REPLICAS = -3


def origin() -> str:
    """This API process, as the ``origin`` header of the tasks it sends."""
    return f"api{os.getpid()}@{socket.gethostname()}"


class TaskPublisher(Protocol):
    async def enqueue(
        self,
        task_id: str,
        jobs: dict[str, str],
        kwargs: dict[str, Any],
        summary: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Record ``jobs`` (job key suffix -> value) and queue the task, or raise
        ``QueueFull`` / ``BrokerUnavailable``; ``headers``: extra message headers (the
        trace context)."""


@dataclass(frozen=True)
class Admission:
    """When the publisher refuses a job, and how many replicas must hold one it accepts."""

    max_depth: int
    ttl_seconds: int
    memory_high_water: float = 1.0  # 1: leave the limit to Redis itself
    min_replicas: int = 0
    replica_timeout_ms: int = 1000


class RedisTaskPublisher:
    def __init__(self, redis: Redis, messages: MessageFactory, admission: Admission) -> None:
        self.redis = redis
        self.messages = messages
        self.queue = messages.queue
        self.admission = admission
        self._enqueue = redis.register_script(ENQUEUE_SCRIPT)

    async def enqueue(
        self,
        task_id: str,
        jobs: dict[str, str],
        kwargs: dict[str, Any],
        summary: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        rules = self.admission
        keys = [self.queue, SENT_KEY, SENT_AT_KEY, *(JOB_KEY_PREFIX + job for job in jobs)]
        tag = str(uuid.uuid4())
        args: list[str | int | float] = [
            rules.max_depth,
            rules.ttl_seconds,
            self.messages.build(task_id, kwargs, summary, headers, delivery_tag=tag),
            rules.memory_high_water,
            rules.min_replicas,
            task_id,
            tag,
            *jobs.values(),
        ]
        replicas = None
        try:
            if rules.min_replicas:
                depth, replicas = await self._enqueue_and_wait(keys, args)
            else:
                depth = await self._enqueue(keys=keys, args=args)
        except OutOfMemoryError as exc:  # over maxmemory already: Redis refused the write
            raise QueueOutOfMemory() from exc
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        if int(depth) == QUEUE_FULL:
            raise QueueFull()
        if int(depth) == OUT_OF_MEMORY:
            raise QueueOutOfMemory()
        if int(depth) == TOO_FEW_REPLICAS:
            raise ReplicasUnavailable()
        if replicas is not None and int(replicas) < rules.min_replicas:
            raise ReplicationTimeout()

    async def _enqueue_and_wait(self, keys: list[str], args: list[Any]) -> tuple[int, int]:
        """The script, then ``WAIT``: the queue depth and the replicas that hold the job."""
        try:
            return await self._enqueue_pipeline(keys, args)
        except NoScriptError:
            # A new master (after a failover) or a restarted Redis has no scripts yet.
            await self.redis.script_load(ENQUEUE_SCRIPT)
            return await self._enqueue_pipeline(keys, args)

    async def _enqueue_pipeline(self, keys: list[str], args: list[Any]) -> tuple[int, int]:
        # One pipeline is one connection: WAIT counts the writes of its own connection.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._enqueue.sha, len(keys), *keys, *args)
            pipe.execute_command(
                "WAIT", self.admission.min_replicas, self.admission.replica_timeout_ms
            )
            depth, replicas = await pipe.execute()
        return int(depth), int(replicas)


class CeleryTaskPublisher:
    """Sends with ``apply_async`` off the event loop (a thread): for embedded mode."""

    def __init__(self, celery_app: Celery, redis: Redis, ttl_seconds: int) -> None:
        self.celery = celery_app
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")

    async def enqueue(
        self,
        task_id: str,
        jobs: dict[str, str],
        kwargs: dict[str, Any],
        summary: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job, value in jobs.items():
                    pipe.set(JOB_KEY_PREFIX + job, value, ex=self.ttl_seconds)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        signature = self.celery.signature(TASK_PREDICT, kwargs=kwargs)
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._thread,
                lambda: signature.apply_async(
                    task_id=task_id, kwargsrepr=summary, headers=headers or None
                ),
            )
        except Exception as exc:  # kombu raises several unrelated types for a dead broker
            raise BrokerUnavailable() from exc

    def close(self) -> None:
        self._thread.shutdown(wait=True)
