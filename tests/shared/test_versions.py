"""The version store: versions beside MODEL_PATH, the served pointer, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import model as model_files
from shared.errors import ModelIntegrityError, UnknownModelVersion
from shared.settings import Settings
from shared.versions import ModelStore, Pointer, ensure_served
from tests.versions import damaged_copy, legacy_copy, other_name, variant


@pytest.fixture
def store(small_model_path: Path, tmp_path: Path) -> ModelStore:
    return ModelStore(legacy_copy(small_model_path, tmp_path / "models"))


def served_file_version(store: ModelStore) -> str:
    """What MODEL_PATH holds, checked as any old reader of it would."""
    return model_files.load(store.model_path).version


def test_a_model_from_before_versions_is_adopted_and_kept(store: ModelStore) -> None:
    old = served_file_version(store)
    assert store.read_pointer() is None
    assert store.adopt() == old
    assert store.read_pointer() == Pointer(old)
    assert [v.version for v in store.versions()] == [old]
    assert store.versions()[0].role == "served"
    assert store.adopt() is None  # once only


def test_add_then_activate_serves_the_new_version_through_model_path(
    store: ModelStore, small_model_path: Path
) -> None:
    old = store.adopt()
    assert old is not None
    new = store.add(variant(small_model_path, 1))
    assert new != old
    assert store.read_pointer() == Pointer(old)  # stored, not served
    assert served_file_version(store) == old
    assert store.activate(new) == Pointer(new)
    assert served_file_version(store) == new  # MODEL_PATH stays the served model
    assert store.load(new).version == new
    assert [(v.version, v.role) for v in store.versions()] == [(old, ""), (new, "served")]
    store.activate(old)  # an older one, again
    assert served_file_version(store) == old
    assert json.loads(store.pointer_path.read_text())["served"] == old
    # Nothing half-written is left behind.
    assert sorted(p.name for p in store.folder.iterdir() if not p.name.startswith(".lock")) == [
        f"{v}.{ext}" for v in sorted([old, new]) for ext in ("joblib", "json")
    ]


def test_unknown_and_malformed_versions_change_nothing(store: ModelStore) -> None:
    old = store.adopt()
    before = store.pointer_path.read_bytes()
    for name in ("0123456789ab", "../../etc/pw", "C88812297665", ""):
        with pytest.raises(UnknownModelVersion):
            store.activate(name)
    assert store.pointer_path.read_bytes() == before
    assert served_file_version(store) == old


def test_a_damaged_version_is_refused_and_changes_nothing(store: ModelStore) -> None:
    old = store.adopt()
    assert old is not None
    bad = damaged_copy(store, old)
    before = store.pointer_path.read_bytes()
    with pytest.raises(ModelIntegrityError, match="sha256"):
        store.activate(bad)
    with pytest.raises(ModelIntegrityError):
        store.start_canary(bad, 10)
    assert store.pointer_path.read_bytes() == before
    assert served_file_version(store) == old


def test_a_file_under_another_versions_name_is_refused(store: ModelStore) -> None:
    old = store.adopt()
    assert old is not None
    other = other_name(old, "beef")
    store.model_file(other).write_bytes(store.model_file(old).read_bytes())
    store.model_file(other).with_suffix(".json").write_bytes(
        store.model_file(old).with_suffix(".json").read_bytes()
    )
    with pytest.raises(ModelIntegrityError, match=f"holds version {old}"):
        store.activate(other)


def test_canary_start_and_drop(store: ModelStore, small_model_path: Path) -> None:
    old = store.adopt()
    assert old is not None
    new = store.add(variant(small_model_path, 1))
    assert store.start_canary(new, 10) == Pointer(old, new, 10.0)
    assert served_file_version(store) == old  # MODEL_PATH: the served one, not the canary
    roles = {v.version: v.role for v in store.versions()}
    assert roles == {old: "served", new: "canary"}
    for bad in (0, 100, -5):
        with pytest.raises(ValueError, match="percentage"):
            store.start_canary(new, bad)
    with pytest.raises(ValueError, match="already the served"):
        store.start_canary(old, 10)
    assert store.drop_canary() == Pointer(old)
    assert store.drop_canary() == Pointer(old)
    store.start_canary(new, 25)
    assert store.activate(new) == Pointer(new)  # activating fully ends the canary


def test_an_unreadable_pointer_is_an_integrity_error(store: ModelStore) -> None:
    store.pointer_path.write_text("{not json")
    with pytest.raises(ModelIntegrityError):
        store.read_pointer()
    store.pointer_path.write_text(json.dumps({"served": "../x"}))
    with pytest.raises(ModelIntegrityError):
        store.read_pointer()
    assert store.versions() == []


def test_pointer_stamp_changes_when_the_pointer_is_replaced(
    store: ModelStore, small_model_path: Path
) -> None:
    assert store.pointer_stamp() is None
    store.adopt()
    first = store.pointer_stamp()
    new = store.add(variant(small_model_path, 1))
    store.activate(new)
    assert store.pointer_stamp() not in (None, first)


def test_ensure_served_loads_the_pointer_then_the_legacy_file(
    store: ModelStore, small_model_path: Path, mnist_dir: Path
) -> None:
    settings = Settings(model_path=store.model_path, mnist_data_dir=mnist_dir)
    legacy = ensure_served(settings, report=lambda _: None)
    assert legacy.version == served_file_version(store)
    store.adopt()
    new = store.add(variant(small_model_path, 1))
    store.activate(new)
    assert ensure_served(settings, report=lambda _: None).version == new


def test_ensure_served_trains_stores_and_serves_when_nothing_is_there(
    tmp_path: Path, mnist_dir: Path
) -> None:
    path = tmp_path / "models" / "mnist_model.joblib"
    settings = Settings(
        model_path=path, mnist_data_dir=mnist_dir, mnist_cache_dir=tmp_path, train_limit=600
    )
    lines: list[str] = []
    model = ensure_served(settings, report=lines.append)
    store = ModelStore(path)
    assert store.read_pointer() == Pointer(model.version)
    assert served_file_version(store) == model.version
    assert any("training one" in line for line in lines)
