"""Every line the API and a worker print as they start, run as ``make run`` runs them, is
a JSON log line (uvicorn's and Celery's own start-up lines included)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.procs import Proc, answers_health, free_port, wait_until
from scripts import run_local
from tests.conftest import RedisServer

pytestmark = pytest.mark.integration

# Celery warns in plain text, before any logging is set up, when a worker runs as root
# (the README says so); the container images never do.
_ROOT_WARNING_FIRST = "SecurityWarning: You're running the worker with superuser privileges"
_ROOT_WARNING_LAST = "_warn_or_raise_security_error("


def _lines(proc: Proc, celery: bool = False) -> list[str]:
    lines = [line for line in proc.log().splitlines() if line.strip()]
    first = [i for i, line in enumerate(lines) if _ROOT_WARNING_FIRST in line]
    if not celery or os.geteuid() != 0:
        assert first == []
        return lines
    [start] = first
    [end] = [i for i, line in enumerate(lines) if _ROOT_WARNING_LAST in line]
    return lines[:start] + lines[end + 1 :]


def _parse(lines: list[str]) -> list[dict[str, object]]:
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


@pytest.mark.slow
def test_the_api_and_a_worker_start_up_in_json_lines(
    private_redis: RedisServer, small_model_path: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "REDIS_URL": private_redis.url,
        "MODEL_PATH": str(small_model_path),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("EMBEDDED", None)
    port = free_port()
    worker = Proc("worker", run_local.worker_command("INFO", "1"), env, tmp_path / "w.log")
    api = Proc("api", run_local.api_command("127.0.0.1", str(port)), env, tmp_path / "a.log")
    try:
        worker.start()
        api.start()
        wait_until(
            lambda: b'"worker ready"' in worker.log_path.read_bytes() or not worker.alive(),
            120,
            "worker ready",
        )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers_health(base) or not api.alive(), 60, "api")
        assert worker.alive(), worker.tail()
        assert api.alive(), api.tail()
        wait_until(lambda: b"Uvicorn running on" in api.log_path.read_bytes(), 10, "banner")
        wait_until(lambda: b" ready." in worker.log_path.read_bytes(), 10, "celery ready")

        api_lines = _parse(_lines(api))
        messages = [str(line["msg"]) for line in api_lines]
        assert any(m.startswith("Started server process") for m in messages)
        assert any(m.startswith("Uvicorn running on") for m in messages)
        assert {line["service"] for line in api_lines} == {"api"}
        assert not any("color_message" in line for line in api_lines)

        worker_lines = _parse(_lines(worker, celery=True))
        [ready] = [line for line in worker_lines if line["msg"] == "worker ready"]
        assert ready["tasks"] == ["mnist.predict"]
        assert ready["concurrency"] == 1
        assert ready["model_path"] == str(small_model_path)
        assert {line["service"] for line in worker_lines} == {"worker"}
    finally:
        api.stop()
        worker.stop()
