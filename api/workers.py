"""What the API knows of the workers and of Redis: heartbeats, queue depth, reachability.

Each live worker process keeps ``mnist:worker:<hostname>/<pid>`` fresh and its name in the
set ``mnist:workers`` (``worker/heartbeat.py``); the readiness probe, ``GET /model``, the
metrics and the micro-batcher's capacity read them here, with no scan of the keyspace.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.results import parse_meta
from shared.errors import BrokerUnavailable
from shared.queue import WORKER_KEY_PREFIX, WORKERS_KEY


class WorkerDirectory:
    def __init__(self, redis: Redis, queue: str) -> None:
        self.redis = redis
        self.queue = queue

    async def workers(self) -> list[dict[str, Any]]:
        """The live worker processes' self-descriptions, sorted by name."""
        try:
            names = sorted(
                n.decode() if isinstance(n, bytes) else str(n)
                for n in await self.redis.smembers(WORKERS_KEY)
            )
            values = await self.redis.mget([WORKER_KEY_PREFIX + n for n in names]) if names else []
            gone = [name for name, value in zip(names, values, strict=True) if value is None]
            if gone:  # a worker that died without saying so: its key expired
                await self.redis.srem(WORKERS_KEY, *gone)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        records = [parse_meta(value) for value in values]
        return [r for r in records if r]

    async def processes(self) -> int:
        """The live worker processes (each keeps a heartbeat of its own)."""
        return len(await self.workers())

    async def queue_depth(self) -> int:
        try:
            return int(await self.redis.llen(self.queue))
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
