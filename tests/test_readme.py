"""The README's model numbers are what training prints (same seed, same model)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_accuracy_and_ece_are_the_trained_models(full_model_path: Path) -> None:
    meta = json.loads(full_model_path.with_suffix(".json").read_text())
    readme = (REPO / "README.md").read_text()
    errors = round((1 - meta["test_accuracy"]) * 10_000)
    accuracy = f"**{meta['test_accuracy'] * 100:.2f}%** ({errors} errors)"
    assert accuracy in readme, f"README should say {accuracy}"
    assert f"**{meta['test_ece']:.4f}**" in readme
