"""``python -m worker.health``: a node is healthy while one of its processes beats."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest

from shared.queue import WORKER_KEY_PREFIX, WORKERS_KEY
from worker import health


def test_a_node_is_alive_while_a_process_of_it_beats(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = fakeredis.FakeRedis()

    def fake_client(*_: Any, **__: Any) -> fakeredis.FakeRedis:
        return client

    monkeypatch.setattr(health.redis_clients, "sync_client", fake_client)
    assert health.main(["celery@box"]) == 1
    assert "has no heartbeat" in capsys.readouterr().err
    for name in ("celery@box/10", "celery@box/11", "celery@other/12"):
        client.set(WORKER_KEY_PREFIX + name, json.dumps({"process": name}))
        client.sadd(WORKERS_KEY, name)
    client.delete(WORKER_KEY_PREFIX + "celery@box/11")  # expired: that process is gone
    assert health.main(["celery@box"]) == 0
    assert "alive (1 process)" in capsys.readouterr().err
    assert health.main(["celery@nobody"]) == 1
