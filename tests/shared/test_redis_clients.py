"""Reaching Redis at a URL or through Sentinel, for our clients and for Celery's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared import redis_clients
from shared.queue import celery_config
from shared.settings import Settings, sentinel_nodes


def test_sentinels_are_host_port_pairs() -> None:
    assert sentinel_nodes(" s1:26379, [::1]:26380 ,") == [("s1", 26379), ("::1", 26380)]
    for bad in ("s1", "s1:", ":26379", "s1:port", "s1:70000"):
        with pytest.raises(ValueError, match="is not host:port"):
            sentinel_nodes(bad)
    with pytest.raises(ValidationError, match="REDIS_SENTINELS"):
        Settings(redis_sentinels="sentinel-without-port")


def test_without_sentinels_everything_uses_the_url() -> None:
    settings = Settings(redis_url="redis://:secret@cache:6380/2")
    assert not redis_clients.uses_sentinel(settings)
    config = celery_config(settings)
    assert config["broker_url"] == config["result_backend"] == "redis://:secret@cache:6380/2"
    assert "master_name" not in config["broker_transport_options"]
    assert redis_clients.describe(settings) == "redis://:***@cache:6380/2"


def test_with_sentinels_the_url_gives_only_the_database_and_the_password() -> None:
    settings = Settings(
        redis_url="redis://:p%40ss%2Fword@ignored-host:1/3",  # as REDIS_URL must spell it
        redis_sentinels="s1:26379,s2:26380",
        redis_master_name="primary",
    )
    assert redis_clients.credentials(settings.redis_url).password == "p@ss/word"
    url = "sentinel://:p%40ss%2Fword@s1:26379/3;sentinel://:p%40ss%2Fword@s2:26380/3"
    config = celery_config(settings)
    assert config["broker_url"] == config["result_backend"] == url
    for options in (config["broker_transport_options"], config["result_backend_transport_options"]):
        assert options["master_name"] == "primary"
    described = redis_clients.describe(settings)
    assert described == "master 'primary' via Sentinel s1:26379,s2:26380 (db 3)"
    assert "p@ss" not in described


def test_clients_find_the_master_through_sentinel(tmp_path: Path) -> None:
    from tests.integration.conftest import start_sentinel_group

    group = start_sentinel_group(tmp_path, "client-pass")
    try:
        settings = Settings(
            redis_url="redis://:client-pass@unused:1/4", redis_sentinels=group.setting
        )
        redis_clients.sync_client(settings).set("via-sentinel", "sync")
        master = redis_clients.sync_client(settings)
        assert master.get("via-sentinel") == b"sync"
        assert master.connection_pool.connection_kwargs["db"] == 4

        async def read() -> bytes | None:
            client = redis_clients.async_client(settings)
            try:
                await client.set("via-sentinel-async", "async")
                value: bytes | None = await client.get("via-sentinel")
                return value
            finally:
                await client.aclose()
                # The Sentinel clients the master was found through have connections too.
                for sentinel in client.connection_pool.sentinel_manager.sentinels:
                    await sentinel.aclose()

        assert asyncio.run(read()) == b"sync"
        direct = group.master.client()
        direct.select(4)
        assert direct.get("via-sentinel-async") == b"async"
    finally:
        group.stop()
