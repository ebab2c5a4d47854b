"""``python -m worker.models`` and ``python -m worker.train``'s version options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import model as model_files
from shared.settings import Settings, get_settings
from shared.versions import ModelStore, Pointer
from tests.versions import damaged_copy, legacy_copy, variant
from worker import models, train


@pytest.fixture
def settings(small_model_path: Path, tmp_path: Path) -> Settings:
    return Settings(model_path=legacy_copy(small_model_path, tmp_path / "models"))


def run(settings: Settings, *argv: str) -> int:
    return models.main(list(argv), settings)


def test_list_activate_and_roll_back(
    settings: Settings, small_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(settings, "list") == 0
    assert "a model from before versions is at MODEL_PATH" in capsys.readouterr().out
    store = ModelStore(settings.model_path)
    old = store.adopt()
    new = store.add(variant(small_model_path, 1))
    assert run(settings, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    header = ["VERSION", "TRAINED", "AT", "ACCURACY", "ECE", "LIFT", "SIZE", "SERVED"]
    assert lines[0].split() == header
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows[old].endswith("served") and rows[new].endswith("-")
    accuracy = model_files.read_metadata(small_model_path)["test_accuracy"]
    assert " MB " in rows[old] and f" {accuracy:.4f} " in rows[old]
    assert rows[old].split()[4] == f"{model_files.load(small_model_path).ink_gamma:g}" == "0.7"

    assert run(settings, "activate", new) == 0
    said = capsys.readouterr().err
    assert f"serving {new} (was {old})" in said and "MODEL_RELOAD_SECONDS" in said
    assert model_files.load(settings.model_path).version == new
    assert run(settings, "activate", str(old)) == 0  # back to the older one
    assert store.read_pointer() == Pointer(str(old))


def test_canary_then_drop(
    settings: Settings, small_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(settings.model_path)
    new = store.add(variant(small_model_path, 1))  # adopt happens in the CLI
    assert run(settings, "activate", new, "--canary", "10") == 0
    assert f"canary {new} for 10%" in capsys.readouterr().err
    pointer = store.read_pointer()
    assert pointer is not None and pointer.canary == new and pointer.canary_percent == 10
    run(settings, "list")
    out = capsys.readouterr().out
    assert "canary 10%" in out and "served 90%" in out
    assert run(settings, "drop-canary") == 0
    assert store.read_pointer() == Pointer(pointer.served)


def test_list_shows_each_versions_lift(
    settings: Settings, small_model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(settings.model_path)
    trained = store.adopt()
    other = store.add(variant(small_model_path, 1, ink_gamma=2.0))
    older = store.add(variant(small_model_path, 2))
    unreadable = store.add(variant(small_model_path, 3))
    # metadata from before the lift existed has no ink_gamma: those models read unlifted
    meta_path = model_files.metadata_path(store.model_file(older))
    meta = json.loads(meta_path.read_text())
    del meta["ink_gamma"]
    meta_path.write_text(json.dumps(meta))
    model_files.metadata_path(store.model_file(unreadable)).write_text("{not json")
    assert run(settings, "list") == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    lift = rows[trained].index("0.7")  # the column, found from a known value
    assert (rows[other][lift], rows[older][lift]) == ("2", "1")
    assert rows[unreadable][lift] == "-"  # nothing known, so no claim of "unlifted"


@pytest.mark.parametrize("how", ["unknown", "damaged", "bad canary share"])
def test_refusals_are_one_line_and_change_nothing(
    settings: Settings, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(settings.model_path)
    old = store.adopt()
    assert old is not None
    served_bytes = settings.model_path.read_bytes()
    pointer_bytes = store.pointer_path.read_bytes()
    if how == "unknown":
        argv = ["activate", "0123456789ab"]
    elif how == "damaged":
        argv = ["activate", damaged_copy(store, old)]
    else:
        argv = ["activate", old, "--canary", "150"]
    assert run(settings, *argv) == models.EXIT_REFUSED
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("models: ") and err.rstrip().endswith("nothing changed.")
    assert "Traceback" not in err
    assert settings.model_path.read_bytes() == served_bytes
    assert store.pointer_path.read_bytes() == pointer_bytes


def test_train_stores_a_new_version_and_serves_it_unless_told_not_to(
    small_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = legacy_copy(small_model_path, tmp_path / "models")
    monkeypatch.setenv("MODEL_PATH", str(path))
    get_settings.cache_clear()
    steps = iter(range(1, 10))
    monkeypatch.setattr(
        train.model_store, "train", lambda *_: variant(small_model_path, next(steps))
    )
    store = ModelStore(path)
    old = model_files.load(path).version
    try:
        assert train.main(["--no-activate"]) == 0
        stored = [v.version for v in store.versions()]
        assert store.read_pointer() == Pointer(old)  # the old one, adopted and still served
        assert len(stored) == 2 and old in stored
        assert train.main(["--force"]) == 0
        pointer = store.read_pointer()
        assert pointer is not None and pointer.served not in stored
        assert model_files.load(path).version == pointer.served
        assert train.main([]) == 0  # a valid model is served: nothing to train
        assert len(store.versions()) == 3
    finally:
        get_settings.cache_clear()
