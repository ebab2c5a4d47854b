"""The Celery application both sides build: one configuration, so they cannot disagree.

The worker registers ``mnist.predict`` on it. The API builds it only in embedded mode,
where tasks run in-process; with Redis it writes the very messages this configuration
describes itself (``api/publisher.py``), on the same queue.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from shared import redis_clients
from shared.settings import Settings

JOB_KEY_PREFIX = "mnist:job:"
# Every task message the API sends, until its result exists (``api/recovery.py``): task id
# -> message, and task id -> when it was sent (ms).
SENT_KEY = "mnist:sent"
SENT_AT_KEY = "mnist:sent_at"
# kombu's Redis transport keeps a fetched, unacknowledged message here under its delivery
# tag (its default ``unacked_key``, which this project does not change).
UNACKED_KEY = "unacked"
ATTEMPTS_KEY_PREFIX = "mnist:attempts:"
WORKER_KEY_PREFIX = "mnist:worker:"
"""Each live worker process keeps ``mnist:worker:<hostname>/<pid>`` (what it serves) fresh."""
WORKERS_KEY = "mnist:workers"
"""A set of the live worker processes' names, so finding them never scans the keyspace."""
WORKER_HEARTBEAT_SECONDS = 2.0
WORKER_KEY_TTL_SECONDS = 6


def celery_config(settings: Settings) -> dict[str, Any]:
    redis_timeouts = {
        "socket_timeout": settings.redis_timeout_seconds * 5,
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "retry_on_timeout": False,
        "health_check_interval": 10,
    }
    sentinel = redis_clients.celery_transport_options(settings)
    return {
        # With Sentinel: kombu's and Celery's sentinel:// URLs, and the master's name below.
        "broker_url": redis_clients.celery_url(settings),
        "result_backend": redis_clients.celery_url(settings),
        # JSON only: a pickle message from anyone who can reach Redis would be code execution.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_default_queue": settings.queue_name,
        # Ack after the task ran; a worker that dies mid-task has its task delivered again.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # No STARTED state (a write per task): the worker's delivery counter, written as
        # it starts a task, already tells a running job from a queued one.
        "task_track_started": False,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_time_limit_seconds,
        "result_expires": settings.result_ttl_seconds,
        "result_extended": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.redis_timeout_seconds,
        "broker_transport_options": {
            # Unacked messages of a worker that vanished return to the queue after this
            # (it must outlast a task's hard time limit); live workers sweep for them
            # every couple of seconds instead of kombu's default of about 100 s.
            "visibility_timeout": settings.visibility_timeout_seconds,
            "unacked_restore_interval": 2,
            "unacked_restore_throttle": 1,
            **redis_timeouts,
            **sentinel,
        },
        "result_backend_transport_options": {**redis_timeouts, **sentinel},
        "redis_socket_timeout": settings.redis_timeout_seconds * 5,
        "redis_socket_connect_timeout": settings.redis_timeout_seconds,
        "redis_retry_on_timeout": False,
        "redis_backend_health_check_interval": 10,
        # Publishing must fail fast when Redis is gone: a 503, never a hang.
        "task_publish_retry": False,
        "worker_hijack_root_logger": False,
        # Task events (for Flower) only when asked for. The API's fast path never sends a
        # task-sent event: a task appears in Flower once a worker receives it.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": False,
        # Embedded mode runs tasks in-process; their results still go where polling looks.
        "task_always_eager": settings.embedded,
        "task_store_eager_result": True,
        "task_eager_propagates": False,
    }


def result_key_prefix(app: Celery) -> str:
    """Where the app's result backend stores, and publishes, a task's state: the key (and
    the pub/sub channel) of task ``t`` is this prefix followed by ``t``. Taken from the
    backend itself (``get_key_for_task``), so a Celery upgrade moves both sides together."""
    probe = "00000000-0000-0000-0000-000000000000"
    key = app.backend.get_key_for_task(probe)
    text = key.decode() if isinstance(key, bytes) else str(key)
    if not text.endswith(probe):
        raise RuntimeError(f"the result backend names task keys in an unexpected way: {text!r}")
    return text.removesuffix(probe)


def make_celery(settings: Settings, name: str = "mnist", backend: type | None = None) -> Celery:
    """``backend``: a result-backend class to use instead of the one the URL names (Celery
    takes a class for ``result_backend`` as for its ``backend`` argument)."""
    app = Celery(name, set_as_current=False)
    config = celery_config(settings)
    if backend is not None:
        config["result_backend"] = backend
    app.conf.update(config)
    return app
