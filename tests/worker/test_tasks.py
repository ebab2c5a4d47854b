"""The ``mnist.predict`` task run in-process (eager), and the training command."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import fakeredis
import numpy as np
import pytest
from celery import Celery

from shared.schemas import TASK_PREDICT, TaskResult
from shared.settings import Settings
from tests.images import png
from worker import train
from worker.celery_app import create_worker_app


@pytest.fixture
def celery_app(small_model_path: Path, mnist_dir: Path, tmp_path: Path) -> Celery:
    settings = Settings(
        embedded=True,
        model_path=small_model_path,
        mnist_data_dir=mnist_dir,
        mnist_cache_dir=tmp_path,
        task_max_retries=1,
    )
    app = create_worker_app(settings)
    app.backend.client = fakeredis.FakeRedis()
    app.tasks[TASK_PREDICT].redis_client = app.backend.client
    return app


def run(app: Celery, images: list[str], task_id: str = "t-1") -> TaskResult:
    result = app.tasks[TASK_PREDICT].apply(kwargs={"images": images}, task_id=task_id)
    return TaskResult.model_validate(result.get())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_batch_is_answered_in_order_and_one_bad_image_fails_alone(
    celery_app: Celery, digits: list[np.ndarray]
) -> None:
    images = [b64(png(digits[1])), b64(b"not an image"), "%%% not base64", b64(png(digits[0]))]
    result = run(celery_app, images)
    assert [
        item.error.code if item.error else item.prediction.prediction for item in result.items
    ] == [
        "1",
        "not_an_image",
        "invalid_input",
        "0",
    ]
    assert result.timings.inference_ms > 0
    assert result.model_version


def test_a_task_that_keeps_killing_workers_is_abandoned(
    celery_app: Celery, digits: list[np.ndarray]
) -> None:
    # Each delivery counts; past task_max_retries + 1 the task answers an error at once.
    client = celery_app.backend.client
    client.set("mnist:attempts:poison", 2)
    result = run(celery_app, [b64(png(digits[2]))], task_id="poison")
    assert result.items[0].error is not None
    assert "abandoned after 2 attempts" in result.items[0].error.detail
    assert int(client.get("mnist:attempts:poison")) == 3


def test_train_command_writes_a_model(mnist_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "cli.joblib"))
    monkeypatch.setenv("MNIST_DATA_DIR", str(mnist_dir))
    monkeypatch.setenv("TRAIN_LIMIT", "800")
    from shared.settings import get_settings

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # main() installs its JSON handler
    get_settings.cache_clear()
    try:
        assert train.main(["--force"]) == 0
        trained = capsys.readouterr().err
        assert train.main([]) == 0
        kept = capsys.readouterr().err
    finally:
        get_settings.cache_clear()
        root.handlers[:], root.level = handlers, level
    assert (tmp_path / "cli.joblib").is_file()
    lines = [json.loads(line) for line in trained.splitlines()]
    assert any("train: test accuracy" in line["msg"] for line in lines)
    assert "trained in" in lines[-1]["msg"]
    # A model that is merely found is not reported as trained (nor trained again).
    [line] = [json.loads(line) for line in kept.splitlines()]
    assert "already served from" in line["msg"] and "kept" in line["msg"]
    assert "trained" not in line["msg"]
    assert line["test_accuracy"] > 0.5
