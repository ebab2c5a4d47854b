"""Worker presence: each worker process keeps a short-lived key in Redis describing itself.

``mnist:worker:<hostname>/<pid>`` holds the process's served model version (and canary)
with the model's metadata, and expires a few seconds after the process stops refreshing
it, so the API's readiness probe and ``GET /model`` read which processes are alive, and
what each serves (two versions during a rollout), with one cheap lookup and no broadcast.
Per process, not per node: each pool process follows the served version on its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from shared.queue import (
    WORKER_HEARTBEAT_SECONDS,
    WORKER_KEY_PREFIX,
    WORKER_KEY_TTL_SECONDS,
    WORKERS_KEY,
)

if TYPE_CHECKING:  # the health check imports this module and must stay light
    from shared.model import Model

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


def process_name(hostname: str, pid: int | None = None) -> str:
    """How a worker process is named in Redis and in ``/ready``: ``celery@host/1234``."""
    return f"{hostname}/{pid if pid is not None else os.getpid()}"


def _published(model: Model) -> dict[str, Any]:
    published = {key: model.metadata.get(key) for key in PUBLISHED_METADATA}
    # The lift this process applies to uploads: the model file's, which its sha256 covers
    # (the metadata's copy is for reading without unpickling).
    published["ink_gamma"] = model.ink_gamma
    return published


def worker_record(
    model: Model,
    hostname: str,
    canary: Model | None = None,
    canary_percent: float = 0.0,
) -> dict[str, Any]:
    return {
        "process": process_name(hostname),
        "hostname": hostname,
        "pid": os.getpid(),
        "seen_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_version": model.version,
        "model": _published(model),
        "canary": (
            {"version": canary.version, "percent": canary_percent, "model": _published(canary)}
            if canary is not None
            else None
        ),
    }


def node_processes(client: redis.Redis, hostname: str) -> list[str]:
    """The names of ``hostname``'s processes with a live key."""
    members = sorted(
        m.decode() if isinstance(m, bytes) else str(m) for m in client.smembers(WORKERS_KEY)
    )
    mine = [m for m in members if m.startswith(hostname + "/")]
    values = client.mget([WORKER_KEY_PREFIX + m for m in mine]) if mine else []
    return [m for m, value in zip(mine, values, strict=True) if value is not None]


class Heartbeat:
    """Refreshes this process's key every couple of seconds from a daemon thread.

    ``serving`` is read at each beat, so the key follows the model the process serves.
    """

    def __init__(
        self,
        client: redis.Redis,
        hostname: str,
        serving: Callable[[], tuple[Model, Model | None, float]],
    ) -> None:
        self.client = client
        self.hostname = hostname
        self.serving = serving
        self.name = process_name(hostname)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    @property
    def key(self) -> str:
        return WORKER_KEY_PREFIX + self.name

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError, OSError):
            # Gone at once, not after the TTL.
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.key)
            pipe.srem(WORKERS_KEY, self.name)
            pipe.execute()

    def beat(self) -> None:
        model, canary, percent = self.serving()
        record = json.dumps(worker_record(model, self.hostname, canary, percent))
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.key, record, ex=WORKER_KEY_TTL_SECONDS)
        # The set of names expires too, once no worker refreshes it.
        pipe.sadd(WORKERS_KEY, self.name)
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


def forget_node(client: redis.Redis, hostname: str) -> None:
    """Remove every process key of ``hostname`` at once (its worker is stopping)."""
    members = [m.decode() if isinstance(m, bytes) else str(m) for m in client.smembers(WORKERS_KEY)]
    mine = [m for m in members if m.startswith(hostname + "/")]
    if mine:
        pipe = client.pipeline(transaction=False)
        pipe.delete(*[WORKER_KEY_PREFIX + m for m in mine])
        pipe.srem(WORKERS_KEY, *mine)
        pipe.execute()
