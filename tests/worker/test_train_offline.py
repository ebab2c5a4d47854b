"""``python -m worker.train`` without MNIST and without internet: one clear line, exit 1."""

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


@pytest.mark.slow
def test_training_offline_fails_in_one_line_naming_the_urls_and_mnist_data_dir(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: every download is refused
    env = {
        **os.environ,
        "MODEL_PATH": str(tmp_path / "model.joblib"),
        "MNIST_DATA_DIR": str(tmp_path / "data"),  # empty
        "MNIST_CACHE_DIR": str(tmp_path / "cache"),
        "http_proxy": closed,
        "https_proxy": closed,
        "no_proxy": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "worker.train"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    [failure] = [line for line in lines if line["level"] in {"error", "critical"}]
    assert failure is lines[-1]
    for mirror in MIRRORS:
        assert mirror in failure["msg"]
    assert "MNIST_DATA_DIR" in failure["msg"]
    assert failure["code"] == "dataset_error"
    assert not (tmp_path / "model.joblib").exists()
