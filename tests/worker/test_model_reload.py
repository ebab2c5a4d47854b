"""Each worker process follows the served version: loads the new one, then swaps."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import fakeredis
import pytest

from bench.procs import wait_until
from shared.settings import Settings
from shared.versions import ModelStore, Pointer
from tests.images import png
from tests.versions import damaged_copy, legacy_copy, variant
from worker import tasks
from worker.heartbeat import Heartbeat, forget_node, node_processes, process_name
from worker.model_reload import Follower, Serving


@pytest.fixture
def store(small_model_path: Path, tmp_path: Path) -> ModelStore:
    store = ModelStore(legacy_copy(small_model_path, tmp_path / "models"))
    store.adopt()
    return store


def follower_for(store: ModelStore, seconds: float = 5.0) -> Follower:
    follower = Follower(Settings(model_path=store.model_path, model_reload_seconds=seconds))
    follower.load_initial()
    return follower


def switches(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "model switched"]


def test_a_new_version_is_swapped_in_and_a_running_task_keeps_its_model(
    store: ModelStore, small_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "worker.model_reload")
    follower = follower_for(store)
    started_with = follower.current()  # what a task in progress holds
    old = started_with.model.version
    assert follower.check() is False  # nothing changed: one stat, no load
    new = store.add(variant(small_model_path, 1))
    store.activate(new)
    assert follower.check() is True
    assert follower.current().model.version == new
    assert started_with.model.version == old  # the task's own reference is untouched
    (line,) = switches(caplog)
    assert (line.from_version, line.model_version) == (old, new)  # type: ignore[attr-defined]
    assert follower.check() is False


def test_a_damaged_version_never_replaces_the_served_one(
    store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "worker.model_reload")
    follower = follower_for(store)
    old = follower.current().model.version
    bad = damaged_copy(store, old)
    # Written by hand: the CLI would have refused it.
    store.pointer_path.write_text(json.dumps({"served": bad}))
    for _ in range(3):
        assert follower.check() is False
    assert follower.current().model.version == old
    refusals = [r for r in caplog.records if r.getMessage().startswith("model version refused")]
    assert len(refusals) == 1  # logged once, not at every poll
    assert refusals[0].refused == bad  # type: ignore[attr-defined]
    store.pointer_path.write_text("{broken")
    assert follower.check() is False
    assert follower.current().model.version == old
    assert not switches(caplog)


def test_the_thread_follows_within_the_interval(store: ModelStore, small_model_path: Path) -> None:
    follower = follower_for(store, seconds=0.1)
    follower.start()
    try:
        new = store.add(variant(small_model_path, 2))
        store.activate(new)
        wait_until(lambda: follower.current().model.version == new, 10, "the swap")
    finally:
        follower.stop()


def test_a_canary_answers_its_share_and_names_itself(
    store: ModelStore, small_model_path: Path, digits: list
) -> None:
    follower = follower_for(store)
    old = follower.current().model.version
    new = store.add(variant(small_model_path, 1))
    store.start_canary(new, 30)
    assert follower.check() is True
    serving = follower.current()
    assert serving.versions == [old, new] and serving.canary_percent == 30
    images = [bytes([i % 256, i // 256]) * 50 for i in range(2000)]
    share = sum(serving.model_for(image).version == new for image in images) / len(images)
    assert 0.25 < share < 0.35
    assert all(serving.model_for(i) is serving.model_for(i) for i in images[:50])  # sticky

    files = [png(digit) for digit in digits]
    items = tasks.predict_with(serving, files, 10_000_000, frozenset({0}))
    assert [item["model_version"] for item in items] == [
        serving.model_for(f).version for f in files
    ]
    assert all(item["prediction"] is not None for item in items)
    assert items[0]["prediction"]["input_image"].startswith("data:image/png")
    plain = tasks.predict_with(Serving(serving.model), files, 10_000_000)
    assert all("model_version" not in item for item in plain)

    store.drop_canary()
    assert follower.check() is True
    assert follower.current().versions == [old]


def test_a_missing_pointer_keeps_the_legacy_model(small_model_path: Path, tmp_path: Path) -> None:
    store = ModelStore(legacy_copy(small_model_path, tmp_path / "legacy"))
    follower = follower_for(store)
    assert follower.check() is False
    assert store.read_pointer() is None  # a worker never writes


def test_each_process_beats_with_what_it_serves(store: ModelStore, small_model_path: Path) -> None:
    client = fakeredis.FakeRedis()
    follower = follower_for(store)

    def serving() -> tuple:
        s = follower.current()
        return s.model, s.canary, s.canary_percent

    beat = Heartbeat(client, "w@h", serving)
    assert beat.name == process_name("w@h")
    beat.beat()
    record = json.loads(client.get(beat.key) or b"{}")
    assert record["model_version"] == follower.current().model.version
    assert record["canary"] is None
    new = store.add(variant(small_model_path, 1))
    store.start_canary(new, 10)
    follower.check()
    beat.beat()
    record = json.loads(client.get(beat.key) or b"{}")
    assert record["canary"]["version"] == new and record["canary"]["percent"] == 10
    other = Heartbeat(client, "other@h", serving)
    other.beat()
    assert node_processes(client, "w@h") == [beat.name]
    forget_node(client, "w@h")
    assert node_processes(client, "w@h") == []
    assert node_processes(client, "other@h") == [other.name]
    assert store.read_pointer() == Pointer(follower.current().model.version, new, 10.0)
