"""``python -m worker.evaluate`` on the small test model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import get_settings
from worker import evaluate


def test_evaluate_reports_and_plots(
    small_model_path: Path, mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MODEL_PATH", str(small_model_path))
    monkeypatch.setenv("MNIST_DATA_DIR", str(mnist_dir))
    get_settings.cache_clear()
    try:
        assert (
            evaluate.main(
                ["--per-set", "20", "--plots", str(tmp_path), "--json", str(tmp_path / "r.json")]
            )
            == 0
        )
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0.9 < report["accuracy"] <= 1.0
    assert sum(map(sum, report["confusion_matrix"])) == 10_000
    assert report["errors"] == 10_000 - sum(report["confusion_matrix"][d][d] for d in range(10))
    assert set(report["real_world"]) == {"photo", "canvas", "large", "typed"}
    assert all(row["images"] == 20 for row in report["real_world"].values())
    assert report["latency_ms_per_image"]["median"] > 0
    for name in ("confusion_matrix.png", "reliability.png"):
        assert (tmp_path / name).stat().st_size > 5_000
    assert "confusion matrix" in out
    assert "real-world sets" in out


def test_confusion_matrix_and_reliability() -> None:
    import numpy as np

    matrix = evaluate.confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), classes=3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    bins = evaluate.reliability(probs, np.array([0, 1, 1]), bins=5)
    assert sum(b["count"] for b in bins) == 3
    top = next(b for b in bins if b["low"] >= 0.8)
    assert top["accuracy"] == 1.0
