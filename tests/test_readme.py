"""The README's model numbers are what training prints (same seed, same model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The same seed gives the same model on one machine, but another CPU's BLAS rounds
# differently (README, Model): one recipe gave 49 errors on two machines, with ECE 0.0023
# and 0.0025; the one before it 53 and 52 errors. The README states one machine's figures;
# a model trained on another must land this close to them.
ERRORS_SPREAD = 4
ECE_SPREAD = 0.0008


def test_readme_accuracy_and_ece_are_the_trained_models(full_model_path: Path) -> None:
    meta = json.loads(full_model_path.with_suffix(".json").read_text())
    readme = (REPO / "README.md").read_text()
    row = re.search(
        r"\| MNIST test accuracy \(10,000\) \| \*\*(\d+\.\d\d)%\*\* \((\d+) errors[;)]", readme
    )
    assert row, "README's model table should give the MNIST test accuracy and its errors"
    stated_accuracy, stated_errors = float(row[1]), int(row[2])
    assert stated_accuracy == round(100 - stated_errors / 100, 2), "accuracy and errors disagree"
    errors = round((1 - meta["test_accuracy"]) * 10_000)
    assert abs(errors - stated_errors) <= ERRORS_SPREAD, f"trained: {errors} errors"
    general = re.search(r"the general head makes (\d+);", readme[row.end() :].split("\n", 1)[0])
    assert general, "README's model table should give the general head's MNIST errors"
    general_errors = round((1 - meta["general_head_test_accuracy"]) * 10_000)
    assert abs(general_errors - int(general[1])) <= ERRORS_SPREAD, f"trained: {general_errors}"
    ece = re.search(r"\| expected calibration error \(15 bins\) \| \*\*(0\.\d{4})\*\*", readme)
    assert ece, "README's model table should give the ECE"
    assert abs(float(ece[1]) - meta["test_ece"]) <= ECE_SPREAD, f"trained: {meta['test_ece']:.4f}"
