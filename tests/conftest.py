"""Fixtures shared by every test package.

MNIST comes from ``MNIST_DATA_DIR`` (CI points it at ``../shared/data/mnist``, which is
also the fallback here). Tests that need a model train a small one once per session on
a subset, which takes about a second. UCI's optdigits training scans, which the full
recipe adds, are fetched once into the user's cache (``shared/optdigits.py``); where that
fails the tests that need them skip, unless ``REQUIRE_OPTDIGITS=1`` (CI).

Redis: a private ``redis-server`` on a free port when the binary exists (so tests may
restart it and flush it: all its data is theirs); otherwise the one on 127.0.0.1:6379,
in a database of its own, touching only keys the tests made. Without any Redis the
tests skip, unless ``REQUIRE_REDIS=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from bench.procs import Proc, free_port, redis_server_args, wait_until
from shared import model as model_store
from shared import optdigits
from shared.errors import DatasetError
from shared.mnist import FILES, load_split
from shared.settings import Settings
from shared.versions import ensure_served

REPO = Path(__file__).resolve().parent.parent
SMALL_TRAIN_IMAGES = 6000


@dataclass
class RedisServer:
    url: str
    port: int
    process: Proc | None = None  # None: the machine's shared server
    made_keys_only: bool = False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> None:
        assert self.process is not None, "only a private server can be restarted"
        self.process.start()
        wait_until(self._answers, 10, "redis-server")

    def stop(self) -> None:
        assert self.process is not None
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to save anything."""
        assert self.process is not None
        self.process.stop(signal.SIGKILL)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.RedisError, OSError):
            return False


def _shared_redis() -> RedisServer | None:
    # The machine's Redis: db 13 is ours by convention; tests only delete keys they made.
    server = RedisServer(url="redis://127.0.0.1:6379/13", port=6379, made_keys_only=True)
    return server if server._answers() else None


def start_private_redis(
    folder: Path, port: int | None = None, *options: str, password: str | None = None
) -> RedisServer | None:
    """A redis-server of the tests' own from ``deploy/redis.conf``, on a free port, its data
    in ``folder`` (None if there is no binary). ``options``: extra ``--name value`` pairs."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = port or free_port()
    folder.mkdir(parents=True, exist_ok=True)
    if password is not None:
        options = (*options, "--requirepass", password, "--masterauth", password)
    process = Proc(
        f"redis-{port}",
        redis_server_args(binary, port, folder, *options),
        dict(os.environ),
        folder / "redis.log",
    )
    auth = f":{password}@" if password is not None else ""
    server = RedisServer(url=f"redis://{auth}127.0.0.1:{port}/0", port=port, process=process)
    server.start()
    return server


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis this test may stop and restart."""
    server = start_private_redis(tmp_path / "redis")
    if server is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is needed (REQUIRE_REDIS=1)")
        pytest.skip("redis-server binary not found")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_private_redis(tmp_path_factory.mktemp("redis"))
    if server is not None:
        yield server
        server.stop()
        return
    shared = _shared_redis()
    if shared is None:
        message = "no redis-server binary and no Redis on 127.0.0.1:6379"
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(message + " (REQUIRE_REDIS=1)")
        pytest.skip(message)
    yield shared


def _data_dir() -> Path:
    configured = os.environ.get("MNIST_DATA_DIR")
    return Path(configured) if configured else REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    folder = _data_dir()
    if not all((folder / spec.name).is_file() for spec in FILES.values()):
        pytest.skip(f"MNIST files not found in {folder}; set MNIST_DATA_DIR")
    return folder


@pytest.fixture(scope="session")
def mnist(
    mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 test images and labels."""
    split = load_split("test", mnist_dir, tmp_path_factory.mktemp("cache"))
    return split.images, split.labels


@pytest.fixture(scope="session")
def digits(mnist: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """One test image per class (the first of each), index = digit."""
    images, labels = mnist
    return [images[int(np.flatnonzero(labels == d)[0])] for d in range(10)]


@pytest.fixture(scope="session")
def small_model_path(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once per session on a subset: fast, and good enough to test with."""
    path = tmp_path_factory.mktemp("model") / "mnist_model.joblib"
    settings = Settings(
        model_path=path,
        mnist_data_dir=mnist_dir,
        mnist_cache_dir=path.parent / "cache",
        train_limit=SMALL_TRAIN_IMAGES,
    )
    model_store.save(model_store.train(settings, report=lambda _: None), path)
    return path


@pytest.fixture(scope="session")
def optdigits_dir() -> Path:
    """The folder holding UCI's optdigits training scans: the user's cache, filled once."""
    folder = Path.home() / ".cache" / "mnist-service"
    try:
        optdigits.load_training_scans(None, folder)
    except DatasetError as exc:
        if os.environ.get("REQUIRE_OPTDIGITS") == "1":
            pytest.fail(f"{exc} (REQUIRE_OPTDIGITS=1)")
        pytest.skip(str(exc))
    return folder


@pytest.fixture(scope="session")
def full_model_path(mnist_dir: Path, optdigits_dir: Path) -> Path:
    """The real model (all 60,000 images), trained once and cached across test runs.

    The cache file is named after the recipe's sources (the pipeline, the augmentation, the
    normaliser it trains through, the training data), so a change to them trains a new one;
    ``shared.model`` verifies it (sha256, scikit-learn version) on every load.
    """
    recipe_files = (
        "features.py",
        "augment.py",
        "normalize.py",
        "model.py",
        "optdigits.py",
        "typefaces.py",
    )
    sources = b"".join((REPO / "shared" / name).read_bytes() for name in recipe_files)
    recipe = hashlib.sha256(sources).hexdigest()[:12]
    path = Path.home() / ".cache" / "mnist-service" / f"test-full-model-{recipe}.joblib"
    settings = Settings(
        model_path=path,
        mnist_data_dir=mnist_dir,
        mnist_cache_dir=path.parent,
        optdigits_data_dir=optdigits_dir,
    )
    ensure_served(settings, report=print)
    return path


@pytest.fixture
def embedded_settings(small_model_path: Path, mnist_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        embedded=True,
        model_path=small_model_path,
        mnist_data_dir=mnist_dir,
        mnist_cache_dir=tmp_path / "cache",
        train_limit=SMALL_TRAIN_IMAGES,
        sync_timeout_seconds=5.0,
    )


@pytest.fixture
def client(embedded_settings: Settings) -> Iterator[TestClient]:
    """The API with eager Celery and an in-process fake Redis (embedded mode)."""
    from api.main import create_app

    with TestClient(create_app(embedded_settings)) as test_client:
        yield test_client
