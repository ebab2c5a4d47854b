"""What the API knows of the workers and of Redis: heartbeats, queue depth, reachability.

Each live worker keeps ``mnist:worker:<hostname>`` fresh (``worker/heartbeat.py``); the
readiness probe, ``GET /model``, the metrics and the micro-batcher's capacity read them here.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.results import parse_meta
from shared.errors import BrokerUnavailable
from shared.queue import WORKER_KEY_PREFIX


class WorkerDirectory:
    def __init__(self, redis: Redis, queue: str) -> None:
        self.redis = redis
        self.queue = queue

    async def workers(self) -> list[dict[str, Any]]:
        """The live workers' self-descriptions, sorted by hostname."""
        try:
            keys = [key async for key in self.redis.scan_iter(match=WORKER_KEY_PREFIX + "*")]
            values = await self.redis.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        records = [parse_meta(value) for value in values]
        return sorted((r for r in records if r), key=lambda r: str(r.get("hostname")))

    async def processes(self) -> int:
        """The live workers' pool processes, summed."""
        return sum(int(w.get("concurrency") or 1) for w in await self.workers())

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
