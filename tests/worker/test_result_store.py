"""The worker's result store against a real ``redis-server`` that refuses writes."""

from __future__ import annotations

import pytest
from celery.exceptions import Reject

from shared.settings import Settings
from tests.conftest import RedisServer
from worker import result_store
from worker.celery_app import create_worker_app


def test_a_refused_result_is_tried_again_then_its_task_goes_back_to_the_queue(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(result_store, "RETRY_SECONDS", 0.3)
    backend = create_worker_app(Settings(redis_url=private_redis.url)).backend
    assert isinstance(backend, result_store.RedisResultStore)
    client = private_redis.client()
    client.config_set("maxmemory", 1)  # Redis refuses every write
    try:
        with pytest.raises(Reject) as refused:
            backend.store_result("t-refused", {"items": []}, "SUCCESS")
    finally:
        client.config_set("maxmemory", "512mb")
    assert refused.value.requeue is True
    assert "trying again" in caplog.text and "goes back to the queue" in caplog.text
    assert client.get("celery-task-meta-t-refused") is None


def test_a_result_is_stored_as_celery_stores_it(private_redis: RedisServer) -> None:
    backend = create_worker_app(Settings(redis_url=private_redis.url)).backend
    backend.store_result("t-ok", {"items": []}, "SUCCESS")
    assert backend.get_task_meta("t-ok")["status"] == "SUCCESS"
