"""Putting tasks on the queue.

``RedisTaskPublisher`` is what the API uses with Redis. Celery's own publisher (kombu) is
synchronous, so from an async API every send would need a thread hop, and it would take a
second round trip for the back-pressure check and the job records. Instead, one small Lua
script does all three atomically, in one round trip, without leaving the event loop:
refuse if the queue is full, record the job ids, push the task.

The message is Celery's task protocol 2 exactly as kombu's Redis transport stores it (a
JSON envelope with the base64 body ``[args, kwargs, embed]``), pushed on the list named
after the queue: what ``celery.send_task`` would write, which the worker consumes
unchanged. The integration tests run real Celery workers on these messages.

``CeleryTaskPublisher`` sends through Celery itself; embedded mode uses it, where tasks
run eagerly inside the API process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from celery import Celery
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import BrokerUnavailable, QueueFull
from shared.queue import JOB_KEY_PREFIX
from shared.schemas import TASK_PREDICT

# KEYS: the queue, then one key per job. ARGV: max depth, ttl, message, then job values.
ENQUEUE_SCRIPT = """
local depth = redis.call('LLEN', KEYS[1])
if depth >= tonumber(ARGV[1]) then return -1 end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 2], 'EX', ARGV[2])
end
redis.call('LPUSH', KEYS[1], ARGV[3])
return depth
"""

ORIGIN = f"api{os.getpid()}@{socket.gethostname()}"


class TaskPublisher(Protocol):
    async def enqueue(
        self, task_id: str, jobs: dict[str, str], kwargs: dict[str, Any], summary: str
    ) -> None:
        """Record ``jobs`` (job key suffix -> value) and queue the task, or raise
        ``QueueFull`` / ``BrokerUnavailable``."""


def task_message(task_id: str, queue: str, kwargs: dict[str, Any], summary: str) -> str:
    """The task as kombu's Redis transport stores it (Celery task protocol 2)."""
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([[], kwargs, embed], separators=(",", ":")).encode()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": TASK_PREDICT,
                "id": task_id,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": "()",
                # What the worker would log for this task: never the image bytes.
                "kwargsrepr": summary,
                "origin": ORIGIN,
                "ignore_result": False,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": str(uuid.uuid4()),
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        },
        separators=(",", ":"),
    )


class RedisTaskPublisher:
    def __init__(self, redis: Redis, queue: str, max_depth: int, ttl_seconds: int) -> None:
        self.queue = queue
        self.max_depth = max_depth
        self.ttl_seconds = ttl_seconds
        self._enqueue = redis.register_script(ENQUEUE_SCRIPT)

    async def enqueue(
        self, task_id: str, jobs: dict[str, str], kwargs: dict[str, Any], summary: str
    ) -> None:
        keys = [self.queue, *(JOB_KEY_PREFIX + job for job in jobs)]
        args = [
            self.max_depth,
            self.ttl_seconds,
            task_message(task_id, self.queue, kwargs, summary),
            *jobs.values(),
        ]
        try:
            depth = await self._enqueue(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        if int(depth) < 0:
            raise QueueFull()


class CeleryTaskPublisher:
    """Sends with ``apply_async`` off the event loop (a thread): for embedded mode."""

    def __init__(self, celery_app: Celery, redis: Redis, ttl_seconds: int) -> None:
        self.celery = celery_app
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")

    async def enqueue(
        self, task_id: str, jobs: dict[str, str], kwargs: dict[str, Any], summary: str
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
                self._thread, lambda: signature.apply_async(task_id=task_id, kwargsrepr=summary)
            )
        except Exception as exc:  # kombu raises several unrelated types for a dead broker
            raise BrokerUnavailable() from exc

    def close(self) -> None:
        self._thread.shutdown(wait=True)
