"""Where the worker stores task results: Celery's Redis (or Sentinel) result backend, with
one change: a result that Redis refuses is tried again, then its task goes back to the queue.

Celery would report such a task as an internal error and, with late acks, still acknowledge
its message: the job would then stay ``queued`` for ever, its message gone and no result
written. That happens when Redis is at ``maxmemory`` (``noeviction`` refuses writes) or
stays unreachable past the backend's own retries. So a refused result is tried again for a
few seconds (Redis at its limit frees memory as other tasks are acknowledged), and then
``Reject(requeue=True)`` leaves the message with the broker, to run again once Redis takes
writes. (If Redis refuses the requeue as well, Celery stops the worker; its message stays
unacknowledged and the next worker restores it after the visibility timeout.)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.backends.redis import RedisBackend, SentinelBackend
from celery.exceptions import Reject
from redis.exceptions import RedisError

from shared import redis_clients
from shared.settings import Settings

log = logging.getLogger("worker.result_store")

# Well inside the gap between the soft and the hard time limit (10 s by default): a task
# killed by the hard limit would be acknowledged, and its job lost.
RETRY_SECONDS = 5.0
RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0)


class _RequeueWhenRefused:
    """Mixed into Celery's backends; ``result_store_class`` binds the URL."""

    # Celery builds a backend configured as a class without a URL: the class carries it.
    configured_url: str = ""

    def __init__(self, *args: Any, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, url=url or self.configured_url, **kwargs)  # type: ignore[call-arg]

    def store_result(self, task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        store = super().store_result  # type: ignore[misc]
        deadline = time.monotonic() + RETRY_SECONDS
        attempt = 0
        while True:
            try:
                return store(task_id, result, state, *args, **kwargs)
            except (RedisError, OSError) as exc:
                if attempt == 0:
                    log.warning(
                        "Redis refused the result of task %s (%s); trying again",
                        task_id,
                        exc,
                        extra={"task_id": task_id, "state": state},
                    )
                if time.monotonic() >= deadline:
                    log.error(
                        "Redis still refuses the result of task %s; its message goes back "
                        "to the queue",
                        task_id,
                        extra={"task_id": task_id, "state": state},
                    )
                    raise Reject(f"result not stored: {exc}", requeue=True) from exc
            time.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
            attempt += 1


class RedisResultStore(_RequeueWhenRefused, RedisBackend):  # type: ignore[misc]  # Celery is untyped
    pass


class SentinelResultStore(_RequeueWhenRefused, SentinelBackend):  # type: ignore[misc]  # Celery is untyped
    pass


def result_store_class(settings: Settings) -> type[RedisBackend]:
    """The result backend for ``settings``: a class, as Celery's ``result_backend`` takes."""
    base = SentinelResultStore if redis_clients.uses_sentinel(settings) else RedisResultStore
    return type(base.__name__, (base,), {"configured_url": redis_clients.celery_url(settings)})
