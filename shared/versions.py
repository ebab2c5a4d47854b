"""Model versions beside ``MODEL_PATH``, and which one is served.

For ``MODEL_PATH=/models/mnist_model.joblib``::

    /models/mnist_model.versions/<version>.joblib   every stored model, never changed again
    /models/mnist_model.versions/<version>.json     its metadata (sha256, accuracy, ...)
    /models/mnist_model.served.json                 the pointer: which version is served
    /models/mnist_model.joblib (+ .json)            hard links to the served version's files

A version's name is the ``model_version`` its answers carry: the first 12 hex digits of
its file's sha256, so an operator can activate exactly what they saw served. Every write is
a new file put in place with ``os.replace``, so a reader (a worker on a read-only mount)
sees the old state or the new one, never half of either. The pointer is what workers
follow; ``MODEL_PATH`` stays the served model for anything that loads it directly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from shared import model as model_files
from shared.errors import ModelIntegrityError, ModelUnavailable, UnknownModelVersion
from shared.model import Model
from shared.settings import Settings

log = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"^[0-9a-f]{12}$")
LOCK_TIMEOUT_SECONDS = 60.0
TRAIN_LOCK_TIMEOUT_SECONDS = 900.0  # workers wait this long for the one that trains
READABLE = 0o644


@dataclass(frozen=True)
class Pointer:
    """What is served: one version, and optionally a canary for a share of the images."""

    served: str
    canary: str | None = None
    canary_percent: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "served": self.served,
            "canary": self.canary,
            "canary_percent": self.canary_percent if self.canary else 0.0,
            "changed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class VersionInfo:
    version: str
    metadata: dict[str, Any]
    role: str  # "served", "canary" or ""


def version_of(metadata: dict[str, Any]) -> str:
    """The name answers carry (``Model.version``): 12 hex digits of the file's sha256."""
    return str(metadata.get("sha256", ""))[:12]


def _replace_with_link(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source``, atomically: a hard link where the file
    system has them (no copy of the bytes), else a copy."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as tmp:
        tmp.write(json.dumps(data, indent=2) + "\n")
    os.chmod(tmp.name, READABLE)
    os.replace(tmp.name, path)


class ModelStore:
    """The versions of the model at ``model_path`` and its served pointer."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self.folder = model_path.with_name(model_path.stem + ".versions")
        self.pointer_path = model_path.with_name(model_path.stem + ".served.json")

    # --- reading (safe on a read-only mount) -----------------------------------------

    def model_file(self, version: str) -> Path:
        if not VERSION_PATTERN.match(version):
            raise UnknownModelVersion(f"{version!r} is not a model version (12 hex digits).")
        return self.folder / f"{version}.joblib"

    def pointer_stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the pointer is replaced: one ``stat``, for cheap polling."""
        try:
            st = self.pointer_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def read_pointer(self) -> Pointer | None:
        """The served pointer, or None where there is none yet (a model from before
        versions, or nothing trained)."""
        try:
            data = json.loads(self.pointer_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ModelIntegrityError(f"{self.pointer_path.name} is unreadable.") from exc
        served, canary = data.get("served"), data.get("canary")
        if not isinstance(served, str) or not VERSION_PATTERN.match(served):
            raise ModelIntegrityError(f"{self.pointer_path.name} names no valid version.")
        if canary is not None and (
            not isinstance(canary, str) or not VERSION_PATTERN.match(canary)
        ):
            raise ModelIntegrityError(f"{self.pointer_path.name} names an invalid canary.")
        percent = float(data.get("canary_percent") or 0.0)
        return Pointer(served, canary, percent if canary else 0.0)

    def verify(self, version: str) -> dict[str, Any]:
        """The version's metadata once its file matches it and its name; else raises
        ``UnknownModelVersion`` or ``ModelIntegrityError``. Nothing is unpickled."""
        path = self.model_file(version)
        if not path.is_file():
            raise UnknownModelVersion(f"No model version {version} in {self.folder}.")
        metadata = model_files.verify(path)
        if version_of(metadata) != version:
            raise ModelIntegrityError(
                f"{path.name} holds version {version_of(metadata)}, not {version}."
            )
        return metadata

    def load(self, version: str) -> Model:
        """The version, loaded after ``verify``; its ``Model.version`` is its name."""
        self.verify(version)
        return model_files.load(self.model_file(version))

    def versions(self) -> list[VersionInfo]:
        """Every stored version with readable metadata, oldest first."""
        try:
            pointer = self.read_pointer()
        except ModelIntegrityError:
            pointer = None
        found = []
        for path in sorted(self.folder.glob("*.joblib")) if self.folder.is_dir() else []:
            version = path.stem
            if not VERSION_PATTERN.match(version):
                continue
            try:
                metadata = dict(json.loads(path.with_suffix(".json").read_text()))
            except (OSError, ValueError):
                metadata = {}
            role = ""
            if pointer is not None and version == pointer.served:
                role = "served"
            elif pointer is not None and version == pointer.canary:
                role = "canary"
            found.append(VersionInfo(version, metadata, role))
        return sorted(found, key=lambda v: (str(v.metadata.get("trained_at", "")), v.version))

    # --- writing (the trainer and the operator's CLI) ----------------------------------

    def lock(self) -> FileLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.folder / ".lock"), timeout=LOCK_TIMEOUT_SECONDS)

    def add(self, model: Model) -> str:
        """Store ``model`` as a new version (its name from its file's sha256)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.folder / f".incoming-{os.getpid()}.joblib"
        model_files.save(model, staging)  # fills in sha256 and size_bytes
        staging.chmod(READABLE)  # workers may run as another user than the trainer
        version = model.version
        # Metadata first: a version's model file only appears once its record is there.
        os.replace(model_files.metadata_path(staging), self.folder / f"{version}.json")
        os.replace(staging, self.model_file(version))
        return version

    def adopt(self) -> str | None:
        """Keep a model from before versions (a plain ``MODEL_PATH``) as a version and
        serve it, so it can be activated again later. Returns its version, or None."""
        if self.pointer_path.exists() or not self.model_path.is_file():
            return None
        try:
            metadata = model_files.verify(self.model_path)
        except ModelUnavailable:
            return None  # damaged: nothing worth keeping
        version = version_of(metadata)
        self.folder.mkdir(parents=True, exist_ok=True)
        _replace_with_link(
            model_files.metadata_path(self.model_path), self.folder / f"{version}.json"
        )
        _replace_with_link(self.model_path, self.model_file(version))
        _write_json(self.pointer_path, Pointer(version).to_dict())
        return version

    def activate(self, version: str) -> Pointer:
        """Serve ``version`` to every image (ending any canary)."""
        self.verify(version)
        pointer = Pointer(version)
        self._publish_served(version)
        _write_json(self.pointer_path, pointer.to_dict())
        return pointer

    def start_canary(self, version: str, percent: float) -> Pointer:
        """Serve ``version`` to ``percent`` of the images; the served one to the rest."""
        if not 0 < percent < 100:
            raise ValueError("a canary's share is a percentage above 0 and below 100")
        self.verify(version)
        current = self.read_pointer()
        if current is None:
            raise UnknownModelVersion("No version is served yet; activate one first.")
        if current.served == version:
            raise ValueError(f"{version} is already the served version")
        pointer = Pointer(current.served, version, percent)
        _write_json(self.pointer_path, pointer.to_dict())
        return pointer

    def drop_canary(self) -> Pointer | None:
        current = self.read_pointer()
        if current is None or current.canary is None:
            return current
        pointer = Pointer(current.served)
        _write_json(self.pointer_path, pointer.to_dict())
        return pointer

    def _publish_served(self, version: str) -> None:
        """``MODEL_PATH`` (and its metadata) become the served version's files; metadata
        first, as ``shared.model.save`` does (a mismatch in between is refused, not used)."""
        source = self.model_file(version)
        _replace_with_link(source.with_suffix(".json"), model_files.metadata_path(self.model_path))
        _replace_with_link(source, self.model_path)


def load_served(settings: Settings) -> Model:
    """The served model, never training one: the pointer's version, or a plain
    ``MODEL_PATH`` from before versions. Raises ``ModelUnavailable`` (or its subclass
    ``ModelIntegrityError``) when there is none that passes its checks."""
    store = ModelStore(settings.model_path)
    pointer = store.read_pointer()
    if pointer is not None:
        return store.load(pointer.served)
    return model_files.load(settings.model_path)


def ensure_served(settings: Settings, report: Callable[[str], None] = log.info) -> Model:
    """The served model, as a worker starts: the pointer's version; a plain ``MODEL_PATH``
    from before versions; or, if there is none or it fails its checks, a model trained now
    (under a file lock, so concurrent workers wait for one trainer), stored and activated."""
    store = ModelStore(settings.model_path)
    try:
        return load_served(settings)
    except ModelIntegrityError as exc:
        report(f"model: {exc.detail} Retraining.")
    except ModelUnavailable:
        report(f"model: none at {settings.model_path}; training one (other workers wait for it).")
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.model_path) + ".lock", timeout=TRAIN_LOCK_TIMEOUT_SECONDS)
    with lock:
        try:  # another process may have trained one while we waited for the lock
            pointer = store.read_pointer()
            if pointer is not None:
                return store.load(pointer.served)
        except ModelUnavailable:
            pass
        model = model_files.train(settings, report)
        with store.lock():
            version = store.add(model)
            store.activate(version)
        report(f"model: stored version {version} in {store.folder} and serving it")
        return store.load(version)
