"""The worker's start-up step, in process: the model before the pool, then each process's
heartbeat and follower, and every key of the node gone when it stops."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from celery.signals import worker_process_init, worker_process_shutdown

from bench.procs import wait_until
from shared.queue import WORKER_KEY_PREFIX, WORKERS_KEY
from shared.settings import Settings
from shared.versions import ModelStore
from tests.versions import legacy_copy
from worker import lifecycle, model_reload
from worker.heartbeat import process_name


def test_the_step_starts_and_stops_each_process_heartbeat(
    small_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = legacy_copy(small_model_path, tmp_path / "models")
    ModelStore(path).adopt()
    settings = Settings(model_path=path, model_reload_seconds=0.2)
    client = fakeredis.FakeRedis()

    def fake_client(*_: Any, **__: Any) -> fakeredis.FakeRedis:
        return client

    # The process's logging and BLAS threads belong to pytest here.
    monkeypatch.setattr(lifecycle, "configure_logging", lambda *_, **__: None)
    monkeypatch.setattr(lifecycle, "threadpool_limits", lambda *_: None)
    monkeypatch.setattr(lifecycle.redis_clients, "sync_client", fake_client)
    monkeypatch.setattr(model_reload, "_followers", {})
    step_class = type("TestLifecycle", (lifecycle.WorkerLifecycle,), {"settings": settings})
    worker = SimpleNamespace(hostname="node@test", pool=None, app=SimpleNamespace(tasks={}))
    step = step_class(worker)
    name = process_name("node@test")
    key = WORKER_KEY_PREFIX + name
    try:
        step.start(worker)  # no forking pool: this process serves, and beats
        wait_until(lambda: client.exists(key) == 1, 10, "the heartbeat")
        record = json.loads(client.get(key) or b"{}")
        served = step.follower.current().model
        assert record["model_version"] == served.version
        assert record["model"]["ink_gamma"] == served.ink_gamma  # the file's, as applied
        assert record["process"] == name and record["hostname"] == "node@test"
        step.stop(worker)
        assert client.exists(key) == 0 and client.smembers(WORKERS_KEY) == set()
        # In a forked pool process the same happens through the pool's signals.
        worker_process_init.send(sender=None)
        wait_until(lambda: client.exists(key) == 1, 10, "the pool process's heartbeat")
        worker_process_shutdown.send(sender=None)
        assert client.exists(key) == 0
    finally:
        step.terminate(worker)
        uid = f"mnist-lifecycle-{id(step)}"
        worker_process_init.disconnect(dispatch_uid=uid)
        worker_process_shutdown.disconnect(dispatch_uid=uid)


def test_a_tracing_typo_stops_the_worker_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    monkeypatch.setattr(lifecycle, "configure_logging", lambda *_, **__: None)
    step_class = type("TestLifecycle", (lifecycle.WorkerLifecycle,), {"settings": Settings()})
    worker = SimpleNamespace(hostname="node@test", pool=None, app=SimpleNamespace(tasks={}))
    with pytest.raises(SystemExit) as stopped:
        step_class(worker)
    assert stopped.value.code == 1
    [record] = [r for r in caplog.records if r.name == "worker"]
    assert record.levelname == "CRITICAL"
    assert "zipkin, which is not installed" in record.getMessage()
