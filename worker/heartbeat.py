"""Worker presence: each worker keeps a short-lived key in Redis describing itself.

``mnist:worker:<hostname>`` holds the worker's model metadata and expires a few seconds
after the worker stops refreshing it, so the API's readiness probe and ``GET /model``
read who is alive, and with what model, with one cheap lookup and no broadcast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any

import redis

from shared.model import Model
from shared.queue import (
    WORKER_HEARTBEAT_SECONDS,
    WORKER_KEY_PREFIX,
    WORKER_KEY_TTL_SECONDS,
    WORKERS_KEY,
)

log = logging.getLogger("worker.heartbeat")

PUBLISHED_METADATA = (
    "pipeline",
    "trained_at",
    "sklearn_version",
    "test_accuracy",
    "test_ece",
    "classes",
    "training_seconds",
    "train_images",
    "seed",
    "size_bytes",
    "sha256",
    "temperature",
)


def worker_record(model: Model, hostname: str, concurrency: int = 1) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "pid": os.getpid(),
        "concurrency": concurrency,
        "seen_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_version": model.version,
        "model": {key: model.metadata.get(key) for key in PUBLISHED_METADATA},
    }


class Heartbeat:
    """Refreshes this worker's key every couple of seconds from a daemon thread."""

    def __init__(
        self, client: redis.Redis, model: Model, hostname: str, concurrency: int = 1
    ) -> None:
        self.client = client
        self.model = model
        self.hostname = hostname
        self.concurrency = concurrency
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    @property
    def key(self) -> str:
        return WORKER_KEY_PREFIX + self.hostname

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError, OSError):
            # Gone at once, not after the TTL.
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.key)
            pipe.srem(WORKERS_KEY, self.hostname)
            pipe.execute()

    def beat(self) -> None:
        record = json.dumps(worker_record(self.model, self.hostname, self.concurrency))
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key, record, ex=WORKER_KEY_TTL_SECONDS)
        # The set of names expires too, once no worker refreshes it.
        pipe.sadd(WORKERS_KEY, self.hostname)
        pipe.expire(WORKERS_KEY, WORKER_KEY_TTL_SECONDS)
        pipe.execute()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.beat()
                if failing:
                    log.info("heartbeat: Redis is back")
                failing = False
            except (redis.RedisError, OSError) as exc:
                if not failing:
                    log.warning("heartbeat: cannot reach Redis (%s)", exc)
                failing = True
            self._stop.wait(WORKER_HEARTBEAT_SECONDS)
