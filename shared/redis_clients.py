"""How every process reaches Redis: at ``REDIS_URL``, or as the master that Sentinel names.

Without ``REDIS_SENTINELS`` a client connects to ``REDIS_URL`` as it always has. With it, each
client asks the Sentinels for the current master of ``REDIS_MASTER_NAME`` whenever it opens a
connection; after a failover the old connections fail (refused, or ``READONLY`` from a demoted
master), and the next one reaches the new master. No process restarts. ``REDIS_URL`` then gives
only the database number and the credentials.

Every Redis client of the service is built here (the API's, the worker's heartbeat and
health check), and so are the Celery broker and result-backend URLs, so the two sides always
agree on where Redis is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from shared.settings import Settings, redacted_url, sentinel_nodes


@dataclass(frozen=True)
class Credentials:
    """The parts of ``REDIS_URL`` that still count when Sentinel finds the master."""

    db: int
    username: str | None
    password: str | None


def credentials(url: str) -> Credentials:
    parts = urlsplit(url)
    path = parts.path.strip("/")
    return Credentials(
        db=int(path) if path.isdigit() else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def uses_sentinel(settings: Settings) -> bool:
    return bool(sentinel_nodes(settings.redis_sentinels))


def describe(settings: Settings) -> str:
    """Where Redis is, for logs and messages (never the password)."""
    if uses_sentinel(settings):
        nodes = ",".join(
            f"{host}:{port}" for host, port in sentinel_nodes(settings.redis_sentinels)
        )
        db = credentials(settings.redis_url).db
        return f"master '{settings.redis_master_name}' via Sentinel {nodes} (db {db})"
    return redacted_url(settings.redis_url)


def _timeouts(settings: Settings) -> dict[str, Any]:
    # A read must outlast the longest WAIT for replicas, or the wait ends as a lost connection.
    read = settings.redis_timeout_seconds * 2
    if settings.redis_min_replicas:
        read = max(read, settings.redis_replica_timeout_seconds + settings.redis_timeout_seconds)
    return {"socket_connect_timeout": settings.redis_timeout_seconds, "socket_timeout": read}


def _sentinel_options(settings: Settings) -> dict[str, Any]:
    # Sentinels answer from memory; a slow one is as good as a dead one.
    return {
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "socket_timeout": settings.redis_timeout_seconds,
    }


def sync_client(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client (worker side); ``options`` override the timeouts."""
    options = {**_timeouts(settings), **options}
    if not uses_sentinel(settings):
        return redis.Redis.from_url(settings.redis_url, **options)
    creds = credentials(settings.redis_url)
    # redis-py leaves Sentinel's constructor and the sync master_for unannotated.
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinel_nodes(settings.redis_sentinels), sentinel_kwargs=_sentinel_options(settings)
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.redis_master_name,
        db=creds.db,
        username=creds.username,
        password=creds.password,
        **options,
    )
    return client


def async_client(settings: Settings, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client (API side); ``options`` override the timeouts."""
    options = {**_timeouts(settings), "health_check_interval": 10, **options}
    if not uses_sentinel(settings):
        return redis.asyncio.Redis.from_url(settings.redis_url, **options)
    creds = credentials(settings.redis_url)
    # redis-py leaves Sentinel's constructor unannotated.
    sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinel_nodes(settings.redis_sentinels), sentinel_kwargs=_sentinel_options(settings)
    )
    client: redis.asyncio.Redis = sentinel.master_for(
        settings.redis_master_name,
        db=creds.db,
        username=creds.username,
        password=creds.password,
        **options,
    )
    return client


def celery_url(settings: Settings) -> str:
    """The broker and result-backend URL in Celery's form.

    With Sentinel it is kombu's ``sentinel://[user:password@]host:port/db`` list joined by
    ``;``; the master's name goes in the transport options (``celery_transport_options``).
    """
    if not uses_sentinel(settings):
        return settings.redis_url
    creds = credentials(settings.redis_url)
    auth = ""
    if creds.password is not None:
        auth = f"{quote(creds.username or '', safe='')}:{quote(creds.password, safe='')}@"
    return ";".join(
        f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{creds.db}"
        for host, port in sentinel_nodes(settings.redis_sentinels)
    )


def celery_transport_options(settings: Settings) -> dict[str, Any]:
    """What Celery's broker and result backend need on top of ``celery_url``."""
    if not uses_sentinel(settings):
        return {}
    return {
        "master_name": settings.redis_master_name,
        "sentinel_kwargs": _sentinel_options(settings),
    }
