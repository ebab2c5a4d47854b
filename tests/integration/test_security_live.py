"""Security properties that need real processes: pickle refused, Redis credentials kept secret."""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from api.messages import MessageFactory
from shared.queue import make_celery, result_key_prefix
from shared.settings import Settings
from tests.images import png
from tests.integration.conftest import Proc, RedisServer, Stack, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "secret-pass"


class TouchOnLoad:
    """Unpickling this creates ``path``: proof that a worker deserialised pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def pickle_message(task_id: str, queue: str, marker: Path) -> str:
    """A well-formed ``mnist.predict`` task whose body is pickle, not JSON."""
    messages = MessageFactory(make_celery(Settings(queue_name=queue)), queue, "test")
    envelope = json.loads(messages.build(task_id, {"images": []}, "pickle"))
    messages.close()
    body = pickle.dumps(([], {"images": [], "trap": TouchOnLoad(marker)}, {}))
    envelope["body"] = base64.b64encode(body).decode("ascii")
    envelope["content-type"] = "application/x-python-serialize"
    envelope["content-encoding"] = "binary"
    return json.dumps(envelope)


def test_a_worker_refuses_a_pickle_message(
    stack: Stack, tmp_path: Path, digits: list[np.ndarray]
) -> None:
    queue = f"pickle-{uuid.uuid4().hex[:8]}"
    worker = stack.worker("pickle", QUEUE_NAME=queue)
    _, base = stack.api(QUEUE_NAME=queue)
    marker = tmp_path / "unpickled"
    task_id = str(uuid.uuid4())
    client = stack.redis.client()
    client.lpush(queue, pickle_message(task_id, queue, marker))

    wait_until(lambda: "untrusted content" in worker.log(), 20, "the worker's refusal")
    assert "application/x-python-serialize" in worker.log()
    assert not marker.exists()  # never unpickled
    prefix = result_key_prefix(make_celery(Settings(queue_name=queue)))
    assert client.get(prefix + task_id) is None  # never run
    wait_until(lambda: client.llen(queue) == 0, 10, "the message to be dropped")
    # Still alive, still serving.
    answer = httpx.post(base + "/predict/mnist", files={"file": ("d.png", png(digits[3]))})
    assert answer.status_code == 200
    assert answer.json()["prediction"] == "3"
    assert worker.alive()


def start_redis_with_password(folder: Path) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD]
    args += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    process = Proc("redis-auth", args, {}, folder / "redis.log")
    server = RedisServer(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", port, process)
    server.start()
    return server


def test_redis_credentials_work_and_never_leak(
    stack: Stack, tmp_path: Path, digits: list[np.ndarray]
) -> None:
    server = start_redis_with_password(tmp_path / "redis")
    try:
        env = {"REDIS_URL": server.url, "LOG_LEVEL": "DEBUG", "QUEUE_NAME": "auth"}
        worker = stack.worker("auth", **env)
        api, base = stack.api(**env)
        bodies: list[str] = []

        def call(method: str, path: str, **kwargs: object) -> httpx.Response:
            response = httpx.request(method, base + path, timeout=10, **kwargs)  # type: ignore[arg-type]
            bodies.append(response.text)
            return response

        wait_until(lambda: call("GET", "/ready").status_code == 200, 20, "ready")
        sync = call("POST", "/predict/mnist", files={"file": ("d.png", png(digits[5]))})
        assert sync.status_code == 200 and sync.json()["prediction"] == "5"
        queued = call(
            "POST", "/predict/mnist?async=true", files={"file": ("d.png", png(digits[2]))}
        )
        assert queued.status_code == 202
        status_url = queued.json()["status_url"]
        wait_until(lambda: call("GET", status_url).json()["status"] == "succeeded", 10, "job")

        server.stop()
        down = call("POST", "/predict/mnist", files={"file": ("d.png", png(digits[5]))})
        assert down.status_code == 503
        wait_until(lambda: call("GET", "/ready").status_code == 503, 5, "not ready")
        assert call("GET", status_url).status_code == 503
        assert call("GET", "/model").status_code == 503
        assert call("GET", "/metrics").status_code == 200
        # Let both sides notice and log the outage (the worker retries its connection).
        wait_until(lambda: "Cannot connect" in worker.log(), 20, "the worker's reconnect log")
        api.stop()
        worker.stop()
    finally:
        server.stop()
    logs = {"api": api.log(), "worker": worker.log()}
    for name, text in logs.items():
        assert PASSWORD not in text, f"the Redis password is in the {name} log"
    # The logs do speak of that Redis (so the check above saw the URLs), but masked.
    assert f"127.0.0.1:{server.port}" in logs["worker"]
    for body in bodies:
        assert PASSWORD not in body
        assert "127.0.0.1" not in body  # no connection details reach clients either
    assert any("Redis" in json.loads(body).get("detail", "") for body in bodies)
