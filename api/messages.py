"""Celery task messages as kombu's Redis transport stores them, built by Celery and kombu.

The fast path (``api/publisher.py``) pushes messages with a Lua script of its own, but
what it pushes is made here by the libraries that define the format: Celery's
``app.amqp.create_task_message`` (the protocol-2 headers, properties and body), kombu's
serializer for the body, and a kombu virtual channel's ``prepare_message`` and
``encode_body`` for the envelope, the very methods kombu's Redis channel runs. Ours are
only the glue steps of ``send_task`` and kombu's ``basic_publish``: the options
``send_task`` hands the producer as message properties (``kwargsrepr``), the anonymous
exchange Celery uses for a direct queue, a delivery tag. ``tests/api/test_messages.py``
pins them by comparing our message with the one ``send_task`` stores in a real Redis, so
an upgrade of Celery or kombu that changes the format fails that test.

What the fast path cannot honour (a key prefix, priorities, compression, another
serializer or protocol, routing to other exchanges) is refused when the API starts.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from kombu.connection import Connection
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as to_json
from kombu.utils.json import loads as from_json

from shared.schemas import TASK_PREDICT

# kombu's default for every persistent message; Celery's task_default_delivery_mode.
PERSISTENT = 2


class UnsupportedConfiguration(RuntimeError):
    """The Celery configuration asks for something the fast path does not write."""


def check_supported(app: Celery) -> None:
    """Raise ``UnsupportedConfiguration`` naming each setting the fast path cannot honour."""
    conf = app.conf
    transport = conf.broker_transport_options or {}
    problems = []
    if conf.task_protocol != 2:
        problems.append(f"task_protocol={conf.task_protocol} (only 2)")
    if conf.task_serializer != "json":
        problems.append(f"task_serializer={conf.task_serializer!r} (only 'json')")
    if conf.task_compression:
        problems.append(f"task_compression={conf.task_compression!r} (none)")
    if conf.task_default_priority is not None or conf.task_queue_max_priority is not None:
        problems.append("task priorities (task_default_priority, task_queue_max_priority)")
    if conf.task_default_delivery_mode not in ("persistent", PERSISTENT):
        problems.append(f"task_default_delivery_mode={conf.task_default_delivery_mode!r}")
    if conf.task_routes or conf.task_queues:
        problems.append("task_routes / task_queues (the task goes to task_default_queue)")
    for option in ("global_keyprefix", "priority_steps", "sep", "body_encoding"):
        if option in transport:
            problems.append(f"broker_transport_options[{option!r}]")
    if problems:
        raise UnsupportedConfiguration(
            "the API's publisher cannot honour: "
            + "; ".join(problems)
            + ". Remove these settings, or send tasks through Celery (embedded mode does)."
        )


class MessageFactory:
    """``mnist.predict`` messages for one queue, as kombu's Redis transport stores them."""

    def __init__(self, app: Celery, queue: str, origin: str) -> None:
        check_supported(app)
        self.app = app
        self.queue = queue
        self.origin = origin
        exchange = app.amqp.queues[queue].exchange
        if exchange.type != "direct":
            raise UnsupportedConfiguration(
                f"queue {queue!r} uses a {exchange.type} exchange; the publisher writes "
                "to direct queues only"
            )
        # A virtual channel of kombu's in-memory transport: the envelope methods are those
        # of kombu's virtual Channel, which its Redis channel inherits unchanged.
        # kombu ships py.typed but leaves these unannotated.
        self._connection = Connection("memory://")  # type: ignore[no-untyped-call]
        self._channel = self._connection.channel()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()
        self._connection.release()  # type: ignore[no-untyped-call]  # unannotated in kombu

    def build(
        self,
        task_id: str,
        kwargs: dict[str, Any],
        kwargsrepr: str,
        headers: dict[str, str] | None = None,
        delivery_tag: str | None = None,
    ) -> str:
        """The JSON string kombu's Redis transport would push for this task; ``headers``:
        more message headers, as ``send_task(headers=...)`` adds them (the trace context,
        which Celery's OpenTelemetry instrumentation reads from the task's request)."""
        message = self.app.amqp.create_task_message(
            task_id,
            TASK_PREDICT,
            (),
            kwargs,
            reply_to=str(uuid.uuid4()),
            origin=self.origin,
            kwargsrepr=kwargsrepr,
            ignore_result=None,
        )
        if headers:  # what send_task_message does with the headers option
            message.headers.update(headers)
        # kombu leaves its serializer registry unannotated.
        content_type, content_encoding, body = serialize(  # type: ignore[no-untyped-call]
            message.body, serializer="json"
        )
        # send_task passes kwargsrepr on to the producer, which stores it as a property too.
        properties = {**message.properties, "delivery_mode": PERSISTENT, "kwargsrepr": kwargsrepr}
        channel = self._channel
        envelope: dict[str, Any] = channel.prepare_message(
            body, None, content_type, content_encoding, message.headers, properties
        )
        # What kombu's basic_publish adds before the transport stores the message; a direct
        # queue is published through the anonymous exchange (as Celery's producer does).
        envelope["body"], encoding = channel.encode_body(envelope["body"], channel.body_encoding)
        envelope["properties"]["body_encoding"] = encoding
        envelope["properties"]["delivery_tag"] = delivery_tag or str(uuid.uuid4())
        envelope["properties"]["delivery_info"].update(exchange="", routing_key=self.queue)
        text: str = to_json(envelope)  # type: ignore[no-untyped-call]  # unannotated in kombu
        return text


def redelivered(text: str) -> str:
    """The message as kombu's Redis transport puts it back on the queue when it restores it
    (a worker that died, a rejected or requeued task, a worker's shutdown): the same
    envelope with ``redelivered`` set in its headers and delivery info, serialised again
    (``Channel._do_restore_message``; ``tests/api/test_recovery.py`` pins it against kombu).
    A text that is not such an envelope comes back as it is."""
    try:
        envelope = from_json(text)  # type: ignore[no-untyped-call]  # unannotated in kombu
        envelope["headers"]["redelivered"] = True
        envelope["properties"]["delivery_info"]["redelivered"] = True
    except (ValueError, TypeError, KeyError):
        return text
    again: str = to_json(envelope)  # type: ignore[no-untyped-call]
    return again
