"""Rolling a model out and back under steady load, with real Redis, one Celery worker with
2 prefork processes and the API: no failed request, and every answer carries the new
version within ``MODEL_RELOAD_SECONDS`` plus a few seconds of each switch."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.procs import REPO
from shared.versions import ModelStore
from tests.conftest import RedisServer
from tests.images import png
from tests.integration.conftest import Stack, wait_until
from tests.versions import damaged_copy, legacy_copy

pytestmark = pytest.mark.integration

RELOAD_SECONDS = 1.0
SLACK_SECONDS = 4.0  # loading a model on two busy cores, and the requests already queued
NODE = "rollout"
CLIENTS = 3
MAX_SECONDS = 600  # the load stops by itself however the test goes


@dataclass
class Answer:
    sent: float
    status: int
    version: str | None


@dataclass
class Load:
    """Steady sync uploads from a few client threads, every answer recorded."""

    base: str
    images: list[bytes]
    store: ModelStore  # wall-clock times throughout: the pointer's mtime marks a switch
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(CLIENTS):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self) -> None:
        deadline = time.time() + MAX_SECONDS
        with httpx.Client(timeout=30) as client:
            count = 0
            while not self.stop.is_set() and time.time() < deadline:
                sent = time.time()
                image = self.images[count % len(self.images)]
                count += 1
                try:
                    response = client.post(
                        self.base + "/predict/mnist", files={"file": ("d.png", image)}
                    )
                    version = response.json().get("model_version")
                    self.answers.append(Answer(sent, response.status_code, version))
                except httpx.HTTPError:
                    self.answers.append(Answer(sent, 0, None))

    def since(self, moment: float) -> list[Answer]:
        return [a for a in list(self.answers) if a.sent >= moment]

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)


def cli(stack: Stack, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        check=False,
        env=stack.env(**env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def ready(base: str) -> dict:
    response = httpx.get(base + "/ready", timeout=3)
    return dict(response.json()) if response.status_code == 200 else {}


def replace_pointer(store: ModelStore, text: str) -> None:
    """As an operator's hand might, but whole: a worker never reads half a file."""
    tmp = store.pointer_path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, store.pointer_path)


def mine(body: dict) -> list[str]:
    return [w for w in body.get("workers", []) if w.startswith(NODE + "@")]


def switch_and_measure(stack: Stack, load: Load, base: str, version: str, old: str) -> float:
    """Activate ``version`` with the CLI; returns how long after it the last answer from
    ``old`` was sent, once every answer sent past the allowed time carries ``version``."""
    done = cli(stack, "worker.models", "activate", version)
    assert done.returncode == 0, done.stderr
    activated = load.store.pointer_path.stat().st_mtime  # when the pointer was replaced
    allowed = activated + RELOAD_SECONDS + SLACK_SECONDS
    wait_until(lambda: len(load.since(allowed)) >= 30, 120, "answers after the switch")
    late = [a for a in load.since(allowed) if a.version != version]
    assert not late, f"{len(late)} answers after the allowed time carried {late[0].version}"
    wait_until(lambda: ready(base).get("model_versions") == [version], 10, "/ready to follow")
    old_answers = [a.sent - activated for a in load.since(activated) if a.version == old]
    return max(old_answers, default=0.0)


def test_roll_out_and_back_under_load_without_a_failed_request(
    redis_server: RedisServer,
    small_model_path: Path,
    mnist_dir: Path,
    tmp_path: Path,
    digits: list[np.ndarray],
) -> None:
    path = legacy_copy(small_model_path, tmp_path / "models")  # a model from before versions
    stack = Stack(redis_server, path, mnist_dir, tmp_path)
    queue = f"rollout-{uuid.uuid4().hex[:8]}"
    store = ModelStore(path)
    legacy_metadata = store.model_path.with_suffix(".json").read_text()
    try:
        # A newly trained version, stored only (a subset and another seed: seconds, not minutes).
        trained = cli(stack, "worker.train", "--no-activate", TRAIN_LIMIT="3500", TRAIN_SEED="1")
        assert trained.returncode == 0, trained.stderr[-3000:]
        (served, new) = (
            v.version for v in sorted(store.versions(), key=lambda v: v.role != "served")
        )
        assert served in legacy_metadata and new != served

        env = {"QUEUE_NAME": queue, "MODEL_RELOAD_SECONDS": str(RELOAD_SECONDS)}
        worker = stack.worker(NODE, concurrency=2, **env)
        _, base = stack.api(**env)
        # One worker node with 2 processes: two entries, each with its own version.
        wait_until(lambda: len(mine(ready(base))) == 2, 30, "both processes' heartbeats")
        assert ready(base)["model_versions"] == [served]

        load = Load(base, [png(digit) for digit in digits], store)
        load.start()
        try:
            wait_until(lambda: len(load.answers) >= 30, 60, "steady load")
            rolled_out = switch_and_measure(stack, load, base, new, served)
            rolled_back = switch_and_measure(stack, load, base, served, new)

            # A canary: half of the images (by their hash) meet the new version.
            done = cli(stack, "worker.models", "activate", new, "--canary", "50")
            assert done.returncode == 0, done.stderr
            both = {served, new}
            canary_from = store.pointer_path.stat().st_mtime + RELOAD_SECONDS + SLACK_SECONDS
            wait_until(lambda: len(load.since(canary_from)) >= 40, 120, "canary answers")
            assert {a.version for a in load.since(canary_from)} == both
            info = httpx.get(base + "/model", timeout=3).json()
            assert {v["version"]: v["canary_percent"] for v in info["versions"]} == {
                served: None,
                new: 50,
            }
            done = cli(stack, "worker.models", "drop-canary")
            assert done.returncode == 0, done.stderr
            dropped = store.pointer_path.stat().st_mtime + RELOAD_SECONDS + SLACK_SECONDS
            wait_until(lambda: len(load.since(dropped)) >= 30, 120, "answers after the drop")
            assert {a.version for a in load.since(dropped)} == {served}

            # A damaged version is never served: written into the pointer by hand (the CLI
            # refuses it), each process refuses it once and goes on with the served one.
            bad = damaged_copy(store, served)
            refused = cli(stack, "worker.models", "activate", bad)
            assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
            pointer = store.pointer_path.read_text()
            replace_pointer(store, pointer.replace(served, bad))
            wait_until(lambda: worker.log().count(f'"refused": "{bad}"') == 2, 30, "both refusals")
            after = time.time()
            wait_until(lambda: len(load.since(after)) >= 30, 60, "answers after the refusal")
        finally:
            load.finish()
        replace_pointer(store, pointer)

        statuses = {a.status for a in load.answers}
        assert statuses == {200}, f"failed requests: {sorted(statuses)}"
        assert bad not in {a.version for a in load.answers}
        assert {a.version for a in load.since(after)} == {served}
        log = worker.log()
        # One line per process per switch: out, back, canary, canary dropped.
        assert log.count('"msg": "model switched"') == 8, log[-3000:]
        assert worker.alive()
        print(
            f"\n{len(load.answers)} answers, all 200; the last answer from the old version "
            f"came {rolled_out:.2f} s after activating {new} and {rolled_back:.2f} s after "
            f"activating {served} again (MODEL_RELOAD_SECONDS={RELOAD_SECONDS:g})"
        )
        metrics = httpx.get(base + "/metrics", timeout=5).text
        assert f'mnist_model_predictions_total{{model_version="{new}"}}' in metrics
    finally:
        stack.stop_all()
