"""The hostile-upload corpus (``tests/hostile.py``) against the in-process app.

While the corpus runs, anything that would create a file (``tempfile``, ``open`` or
``os.open`` for writing) is recorded and refused: uploads must stay in memory.
"""

from __future__ import annotations

import builtins
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette import formparsers

from api.main import create_app
from shared.schemas import PredictionResponse
from shared.settings import Settings
from tests.conftest import REPO, SMALL_TRAIN_IMAGES
from tests.hostile import BY_NAME, CASE_NAMES, Digit

CORPUS_DIGIT = 7
REQUIRED = {
    "empty_file",
    "text_named_png",
    "html_named_png",
    "json_named_png",
    "svg_named_png",
    "pdf_named_png",
    "zip_named_png",
    "truncated_png",
    "truncated_jpeg",
    "png_broken_header_crc",
    "decompression_bomb_30000_square",
    "one_by_one",
    "ten_thousand_by_one",
    "one_by_ten_thousand",
    "animated_gif",
    "multipage_tiff",
    "cmyk_jpeg",
    "png_16_bit",
    "palette_png",
    "transparent_png",
    "jpeg_exif_rotation",
    "wrong_content_type",
    "path_traversal_name",
    "unicode_name_1000_chars",
    "twenty_mb_upload",
    "multipart_without_file",
    "two_file_parts",
    "json_body",
    "bogus_boundary",
}

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class DiskGuard:
    """Records (and refuses) every attempt to create or write a file."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def refuse(self, what: str) -> Callable[..., Any]:
        def refused(*args: object, **kwargs: object) -> Any:
            self.attempts.append(f"{what}{args!r}")
            raise PermissionError(f"uploads must not touch the disk ({what})")

        return refused

    def install(self, patch: pytest.MonkeyPatch) -> None:
        for name in (
            "mkstemp",
            "mkdtemp",
            "TemporaryFile",
            "NamedTemporaryFile",
            "SpooledTemporaryFile",
            "TemporaryDirectory",
        ):
            patch.setattr(tempfile, name, self.refuse(f"tempfile.{name}"))
        # Starlette's own form parser (FastAPI's UploadFile) spools big parts to disk.
        patch.setattr(
            formparsers, "SpooledTemporaryFile", self.refuse("starlette SpooledTemporaryFile")
        )
        real_open, real_os_open = builtins.open, os.open

        def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if any(flag in mode for flag in "wax+"):
                return self.refuse("open")(file, mode)
            return real_open(file, mode, *args, **kwargs)

        def guarded_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & WRITE_FLAGS:
                return int(self.refuse("os.open")(path, flags))
            return real_os_open(path, flags, *args, **kwargs)

        patch.setattr(builtins, "open", guarded_open)
        patch.setattr(io, "open", guarded_open)  # what pathlib calls
        patch.setattr(os, "open", guarded_os_open)


@pytest.fixture(scope="module")
def corpus_client(
    small_model_path: Path, mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    # One app for the whole corpus: the cases must also not leave it in a bad state.
    settings = Settings(
        embedded=True,
        model_path=small_model_path,
        mnist_data_dir=mnist_dir,
        mnist_cache_dir=tmp_path_factory.mktemp("cache"),
        train_limit=SMALL_TRAIN_IMAGES,
        sync_timeout_seconds=10.0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def corpus_digit(digits: list[np.ndarray]) -> Digit:
    return Digit(digits[CORPUS_DIGIT], CORPUS_DIGIT)


@pytest.fixture
def disk_guard(monkeypatch: pytest.MonkeyPatch) -> DiskGuard:
    guard = DiskGuard()
    guard.install(monkeypatch)
    return guard


def test_the_corpus_covers_the_issue() -> None:
    assert len(CASE_NAMES) >= 30
    assert set(CASE_NAMES) >= REQUIRED, REQUIRED - set(CASE_NAMES)


def test_the_disk_guard_catches_writes(tmp_path: Path, disk_guard: DiskGuard) -> None:
    with pytest.raises(PermissionError), tempfile.SpooledTemporaryFile():
        pass
    with pytest.raises(PermissionError):
        (tmp_path / "x").write_bytes(b"x")
    with pytest.raises(PermissionError):
        formparsers.SpooledTemporaryFile(max_size=1)
    assert len(disk_guard.attempts) == 3


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_case(
    name: str, corpus_client: TestClient, corpus_digit: Digit, disk_guard: DiskGuard
) -> None:
    case = BY_NAME[name]
    response = corpus_client.request(**case.build(corpus_digit).as_kwargs())
    body = response.json()
    assert response.status_code < 500, body
    assert case.check(response.status_code, body, corpus_digit) == [], body
    assert disk_guard.attempts == []
    assert "Traceback" not in response.text
    request_id = response.headers["x-request-id"]
    assert 0 < len(request_id) <= 128
    if response.status_code == 200:
        PredictionResponse.model_validate(body)
    else:
        assert isinstance(body["detail"], str)
        assert set(body) == {"detail"}


def test_a_hostile_name_creates_no_file(
    corpus_client: TestClient, corpus_digit: Digit, disk_guard: DiskGuard
) -> None:
    request = BY_NAME["path_traversal_name"].build(corpus_digit)
    assert corpus_client.request(**request.as_kwargs()).status_code == 200
    assert disk_guard.attempts == []
    for base in (REPO, Path.cwd(), Path(tempfile.gettempdir())):
        assert not (base / "../../etc/passwd.png").exists()


def test_the_app_still_answers_after_the_corpus(
    corpus_client: TestClient, corpus_digit: Digit
) -> None:
    request = BY_NAME["wrong_content_type"].build(corpus_digit)
    response = corpus_client.request(**request.as_kwargs())
    assert response.json()["prediction"] == str(CORPUS_DIGIT)
