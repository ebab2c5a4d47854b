"""``make run``'s decisions (``scripts/run_local.py``), without starting anything."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import run_local
from shared.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # main() installs its JSON handler
    get_settings.cache_clear()  # main() reads the environment each test sets
    yield
    get_settings.cache_clear()
    root.handlers[:], root.level = handlers, level


def test_without_redis_it_plans_the_api_alone() -> None:
    steps = run_local.plan(Settings(), {"PORT": "9000"}, redis_up=False)
    assert steps.embedded
    assert steps.train is None
    assert steps.worker is None
    assert steps.api[-6:] == [
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--log-config",
        str(run_local.API_LOG_CONFIG),
    ]


def test_embedded_wins_even_with_redis() -> None:
    assert run_local.plan(Settings(embedded=True), {}, redis_up=True).embedded


def test_with_redis_it_plans_training_a_quiet_worker_and_the_api() -> None:
    steps = run_local.plan(Settings(log_level="DEBUG"), {"WORKERS": "3"}, redis_up=True)
    assert not steps.embedded
    assert steps.train is not None
    assert steps.train[-2:] == ["-m", "worker.train"]
    assert steps.worker is not None
    assert "--quiet" in steps.worker  # the banner is plain text; the worker logs JSON instead
    assert steps.worker[-4:] == ["--loglevel", "DEBUG", "--concurrency", "3"]
    assert "--log-config" in steps.api
    assert run_local.API_LOG_CONFIG.is_file()


class _Child:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.signals: list[int] = []

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)


def _run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], train_exit: int
) -> tuple[int, list[dict[str, object]], list[_Child]]:
    started: list[_Child] = []

    def popen(args: list[str], env: dict[str, str]) -> _Child:
        started.append(_Child(args, env))
        return started[-1]

    monkeypatch.setattr(run_local, "redis_answers", lambda url: True)
    monkeypatch.setattr(subprocess, "call", lambda args, env: train_exit)
    monkeypatch.setattr(subprocess, "Popen", popen)
    code = run_local.main()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    return code, lines, started


def test_the_real_path_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:secret@redis.example:6390/2")
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "m.joblib"))
    monkeypatch.setenv("WORKERS", "2")
    monkeypatch.delenv("EMBEDDED", raising=False)
    code, lines, started = _run(monkeypatch, capsys, train_exit=0)
    assert code == 0
    [real] = [line for line in lines if "REAL MODE" in str(line["msg"])]
    assert real["worker_processes"] == 2
    assert real["model_path"] == str(tmp_path / "m.joblib")
    assert real["redis"] == "redis://:***@redis.example:6390/2"  # never the password
    assert "secret" not in json.dumps(lines)
    assert not any("EMBEDDED" in str(line["msg"]) for line in lines)
    assert [child.args[2] for child in started] == ["celery", "uvicorn"]
    assert all(child.signals for child in started)  # both stopped when the API exits


def test_a_failed_training_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "m.joblib"))
    monkeypatch.delenv("EMBEDDED", raising=False)
    code, lines, started = _run(monkeypatch, capsys, train_exit=1)
    assert code == 1
    assert started == []
    assert lines[-1]["level"] == "error"
    assert "training failed" in str(lines[-1]["msg"])
    assert not any("REAL MODE" in str(line["msg"]) for line in lines)


def test_the_containers_start_the_same_way() -> None:
    # The images and compose run the API and workers with the same logging flags as make run.
    repo = Path(__file__).resolve().parent.parent
    api = (repo / "Dockerfile.api").read_text()
    assert '"--log-config", "api/log_config.json"' in api
    worker = (repo / "Dockerfile.worker").read_text()
    assert '"worker.celery_app", "--quiet", "worker"' in worker
    compose = (repo / "docker-compose.yml").read_text()
    assert "- worker.celery_app\n      - --quiet" in compose
