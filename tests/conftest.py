"""Fixtures shared by every test package.

MNIST comes from ``MNIST_DATA_DIR`` (CI points it at ``../shared/data/mnist``, which is
also the fallback here). Tests that need a model train a small one once per session on
a subset, which takes about a second.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from shared import model as model_store
from shared.mnist import FILES, load_split
from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SMALL_TRAIN_IMAGES = 6000


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
def full_model_path(mnist_dir: Path) -> Path:
    """The real model (all 60,000 images), trained once and cached across test runs.

    The cache file is named after the pipeline's source, so a change to the recipe trains
    a new one; ``shared.model`` verifies it (sha256, scikit-learn version) on every load.
    """
    recipe = hashlib.sha256((REPO / "shared" / "features.py").read_bytes()).hexdigest()[:12]
    path = Path.home() / ".cache" / "mnist-service" / f"test-full-model-{recipe}.joblib"
    settings = Settings(model_path=path, mnist_data_dir=mnist_dir, mnist_cache_dir=path.parent)
    model_store.ensure(settings, report=print)
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
