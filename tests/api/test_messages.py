"""Our task messages are Celery's: compared with what ``send_task`` stores in a real Redis."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from celery import Celery
from celery.app.task import Context
from celery.worker.request import Request
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.celery import celery_getter

from api.messages import MessageFactory, UnsupportedConfiguration
from shared.queue import make_celery, result_key_prefix
from shared.schemas import TASK_PREDICT
from shared.settings import Settings
from tests.conftest import RedisServer
from worker.celery_app import create_worker_app

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


# A W3C trace context, as the API's publish span injects it (shared.tracing's propagator).
TRACE_HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def test_trace_headers_go_where_send_task_puts_them(private_redis: RedisServer) -> None:
    app = app_for(private_redis)
    app.send_task(
        TASK_PREDICT, kwargs=KWARGS, task_id="by-celery", kwargsrepr=SUMMARY, headers=TRACE_HEADERS
    )
    ours = MessageFactory(app, QUEUE, "api1@host")
    try:
        private_redis.client().lpush(QUEUE, ours.build("by-us", KWARGS, SUMMARY, TRACE_HEADERS))
    finally:
        ours.close()
    client = private_redis.client()
    by_celery, by_us = client.rpop(QUEUE), client.rpop(QUEUE)
    assert comparable(by_us) == comparable(by_celery)
    assert comparable(by_us)["headers"]["traceparent"] == TRACE_HEADERS["traceparent"]


def test_celery_instrumentation_reads_the_trace_from_our_message(
    private_redis: RedisServer,
) -> None:
    """The worker's side, by Celery's and kombu's own code: our stored envelope becomes a
    kombu message, Celery's worker ``Request``, then the task's request context, from
    which the instrumentation's getter extracts the parent of the task span."""
    settings = Settings(redis_url=private_redis.url, queue_name=QUEUE)
    worker_app = create_worker_app(settings)
    ours = MessageFactory(make_celery(settings), QUEUE, "api1@host")
    try:
        envelope = json.loads(ours.build("by-us", KWARGS, SUMMARY, TRACE_HEADERS))
    finally:
        ours.close()
    with worker_app.connection_for_read() as connection:
        channel = connection.default_channel
        message = channel.Message(envelope, channel=channel)
        request = Request(message, app=worker_app)
        task_context = Context(request.request_dict)
        parent = propagate.extract(task_context, getter=celery_getter)
    span = trace.get_current_span(parent).get_span_context()
    assert f"{span.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{span.span_id:016x}" == "b7ad6b7169203331"
    assert span.is_remote


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
