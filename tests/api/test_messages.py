"""Our task messages are Celery's: compared with what ``send_task`` stores in a real Redis."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from celery import Celery

from api.messages import MessageFactory, UnsupportedConfiguration
from shared.queue import make_celery, result_key_prefix
from shared.schemas import TASK_PREDICT
from shared.settings import Settings
from tests.conftest import RedisServer

QUEUE = "messages-test"
KWARGS = {"images": ["aGVsbG8="], "request_ids": ["r-1"], "enqueued_at": 1.5, "return_inputs": []}
SUMMARY = "{'images': <1 images>, 'request_ids': ['r-1']}"
# Fresh per message on both sides; everything else must be equal.
UNIQUE = {
    ("headers", "id"),
    ("headers", "root_id"),
    ("headers", "origin"),
    ("properties", "correlation_id"),
    ("properties", "reply_to"),
    ("properties", "delivery_tag"),
}


def comparable(raw: bytes) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    for part, key in UNIQUE:
        assert message[part].pop(key), f"{part}.{key} is empty"
    return message


def app_for(server: RedisServer, **conf: Any) -> Celery:
    app = make_celery(Settings(redis_url=server.url, queue_name=QUEUE))
    app.conf.update(conf)
    return app


def test_our_message_is_the_one_send_task_stores(private_redis: RedisServer) -> None:
    app = app_for(private_redis)
    app.send_task(TASK_PREDICT, kwargs=KWARGS, task_id="by-celery", kwargsrepr=SUMMARY)
    ours = MessageFactory(app, QUEUE, "api1@host")
    try:
        private_redis.client().lpush(QUEUE, ours.build("by-us", KWARGS, SUMMARY))
    finally:
        ours.close()
    client = private_redis.client()
    by_celery, by_us = client.rpop(QUEUE), client.rpop(QUEUE)
    assert json.loads(by_us)["headers"]["id"] == "by-us"
    assert comparable(by_us) == comparable(by_celery)


def test_result_keys_come_from_the_backend(private_redis: RedisServer) -> None:
    app = app_for(private_redis)
    prefix = result_key_prefix(app)
    app.backend.store_result("t-1", {"items": []}, "SUCCESS")
    assert private_redis.client().get(prefix + "t-1") is not None


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("broker_transport_options", {"global_keyprefix": "x:"}, "global_keyprefix"),
        ("task_default_priority", 5, "priorities"),
        ("task_compression", "gzip", "task_compression"),
        ("task_serializer", "pickle", "task_serializer"),
        ("task_protocol", 1, "task_protocol"),
    ],
)
def test_what_the_fast_path_cannot_write_is_refused_at_start(
    private_redis: RedisServer, setting: str, value: Any, named: str
) -> None:
    with pytest.raises(UnsupportedConfiguration, match=named):
        MessageFactory(app_for(private_redis, **{setting: value}), QUEUE, "api1@host")
