"""Helpers for tests of model versions: stores in temporary folders, versions made in
milliseconds from the session's small model (no training), and damaged ones."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared import model as model_files
from shared.model import Model
from shared.versions import ModelStore


def legacy_copy(small_model_path: Path, folder: Path) -> Path:
    """A ``MODEL_PATH`` as it was before versions: a model file and its metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist_model.joblib"
    shutil.copyfile(small_model_path, path)
    shutil.copyfile(model_files.metadata_path(small_model_path), model_files.metadata_path(path))
    return path


def variant(small_model_path: Path, step: int, ink_gamma: float | None = None) -> Model:
    """Another valid model (its temperature nudged; its ink lift ``ink_gamma`` if given): a
    new file, so a new version."""
    base = model_files.load(small_model_path)
    metadata = {k: v for k, v in base.metadata.items() if k not in ("sha256", "size_bytes")}
    trained_at = datetime.now(UTC) + timedelta(minutes=step)
    metadata["trained_at"] = trained_at.isoformat(timespec="seconds")
    return Model(
        base.pipeline,
        base.temperature * (1 + step / 100),
        base.classes,
        metadata,
        ink_gamma=base.ink_gamma if ink_gamma is None else ink_gamma,
    )


def other_name(version: str, prefix: str = "dead") -> str:
    """A version name that is not ``version`` (same tail, another head)."""
    head = prefix if not version.startswith(prefix) else "f00d"
    return head + version[4:]


def damaged_copy(store: ModelStore, version: str) -> str:
    """A version whose file no longer matches its metadata (bytes flipped on disk), stored
    under a name of its own; returns that name."""
    name = other_name(version)
    source = store.model_file(version)
    target = store.model_file(name)
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    meta = source.with_suffix(".json").read_text().replace(version, name, 1)
    target.with_suffix(".json").write_text(meta)
    return name
