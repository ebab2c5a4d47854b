"""Training without MNIST and without internet (``python -m worker.train``, or a worker
that finds no model): one clear error line, no traceback, a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.procs import free_port
from shared.mnist import MIRRORS

REPO = Path(__file__).resolve().parent.parent.parent


def _offline_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "data").mkdir()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: every download is refused
    return {
        **os.environ,
        "MODEL_PATH": str(tmp_path / "model.joblib"),
        "MNIST_DATA_DIR": str(tmp_path / "data"),  # empty
        "MNIST_CACHE_DIR": str(tmp_path / "cache"),
        "http_proxy": closed,
        "https_proxy": closed,
        "no_proxy": "",
        "REDIS_URL": closed.replace("http", "redis") + "/0",  # never reached
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_one_clear_failure(stderr: str) -> None:
    assert "Traceback" not in stderr
    # Every line is JSON except, as root, Celery's SecurityWarning (see tests/integration).
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    [failure] = [line for line in lines if line["level"] in {"error", "critical"}]
    assert failure is lines[-1]
    for mirror in MIRRORS:
        assert mirror in failure["msg"]
    assert "MNIST_DATA_DIR" in failure["msg"]
    assert failure["code"] == "dataset_error"


@pytest.mark.slow
def test_training_offline_fails_in_one_line_naming_the_urls_and_mnist_data_dir(
    tmp_path: Path,
) -> None:
    done = _run(["-m", "worker.train"], _offline_env(tmp_path))
    assert done.returncode == 1
    assert all(line.startswith("{") for line in done.stderr.splitlines())
    _assert_one_clear_failure(done.stderr)
    assert not (tmp_path / "model.joblib").exists()


@pytest.mark.slow
def test_a_worker_that_cannot_get_a_model_exits_with_one_line(tmp_path: Path) -> None:
    done = _run(
        ["-m", "celery", "-A", "worker.celery_app", "--quiet", "worker", "--concurrency", "1"],
        _offline_env(tmp_path),
    )
    assert done.returncode == 1
    _assert_one_clear_failure(done.stderr)
