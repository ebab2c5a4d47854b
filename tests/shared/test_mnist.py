"""MNIST loading: parsing, checksums, cache and download fallback."""

from __future__ import annotations

import gzip
import http.client
import logging
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from shared import mnist
from shared.mnist import FILES, DatasetError, load_file, load_split, parse_idx


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_round_trip() -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00\x08\x01",
        b"\x00\x00\x0d\x01\x00\x00\x00\x01",
        b"\x00\x00\x08\x01\x00\x00\x00\x05ab",
    ],
)
def test_parse_idx_rejects_garbage(data: bytes) -> None:
    with pytest.raises(DatasetError):
        parse_idx(data)


def test_load_split_from_the_data_dir(mnist_dir: Path, tmp_path: Path) -> None:
    split = load_split("test", mnist_dir, tmp_path, limit=100)
    assert split.images.shape == (100, 28, 28)
    assert split.images.dtype == np.uint8
    assert len(split) == 100
    full = load_split("test", mnist_dir, tmp_path)
    assert np.bincount(full.labels).tolist()[:3] == [980, 1135, 1032]


def test_a_file_failing_its_checksum_is_never_used(mnist_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    name = FILES["test_labels"].name
    tampered = bytearray(gzip.decompress((mnist_dir / name).read_bytes()))
    tampered[100] ^= 0xFF
    (data_dir / name).write_bytes(gzip.compress(bytes(tampered)))
    # No good copy anywhere and no mirror that answers: a clear error, not bad data.
    with pytest.raises(DatasetError, match="Could not download"):
        load_file("test_labels", data_dir, tmp_path / "cache", mirrors=("file:///nonexistent/",))


def test_missing_files_are_downloaded_verified_and_cached(mnist_dir: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    bad_mirror = tmp_path / "bad"
    bad_mirror.mkdir()
    name = FILES["test_labels"].name
    shutil.copy(mnist_dir / name, mirror / name)
    (bad_mirror / name).write_bytes(gzip.compress(b"not mnist"))
    cache = tmp_path / "cache"
    mirrors = (bad_mirror.as_uri() + "/", mirror.as_uri() + "/")

    labels = load_file("test_labels", None, cache, mirrors=mirrors)
    assert labels.shape == (10_000,)
    assert (cache / name).is_file()
    # The second load comes from the cache; the mirrors are not needed any more.
    again = load_file("test_labels", None, cache, mirrors=("file:///nonexistent/",))
    assert np.array_equal(labels, again)


def labels_mirror(mnist_dir: Path, tmp_path: Path) -> str:
    """A local mirror holding MNIST's test labels, as a URL prefix."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(mnist_dir / FILES["test_labels"].name, mirror)
    return mirror.as_uri() + "/"


def test_a_dropped_download_moves_on_to_the_next_mirror(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = labels_mirror(mnist_dir, tmp_path)
    real_urlopen = urllib.request.urlopen

    class Dropped:
        def __enter__(self) -> Dropped:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self) -> bytes:
            raise http.client.IncompleteRead(b"", 10)

    def urlopen(url: str, timeout: float) -> object:
        return Dropped() if url.startswith("https://dropped.example/") else real_urlopen(url)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    mirrors = ("https://dropped.example/", mirror)
    assert load_file("test_labels", None, tmp_path / "cache", mirrors=mirrors).shape == (10_000,)
    # With no other mirror, the dropped read is a DatasetError that names it.
    with pytest.raises(DatasetError, match="IncompleteRead"):
        load_file("test_labels", None, tmp_path / "other", mirrors=mirrors[:1])


def test_a_cache_that_cannot_be_written_still_loads(
    mnist_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mirror = labels_mirror(mnist_dir, tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="shared.mnist"):
        labels = load_file("test_labels", None, blocked / "cache", mirrors=(mirror,))
    assert labels.shape == (10_000,)
    assert "could not cache" in caplog.text


def test_a_failed_cache_write_leaves_no_temporary_file(
    mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = labels_mirror(mnist_dir, tmp_path)
    cache = tmp_path / "cache"

    def full_disk(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mnist.os, "replace", full_disk)
    labels = load_file("test_labels", None, cache, mirrors=(mirror,))
    assert labels.shape == (10_000,)
    assert list(cache.iterdir()) == []


def test_an_unreadable_file_falls_back_to_the_cache(mnist_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    cache = tmp_path / "cache"
    data_dir.mkdir()
    cache.mkdir()
    name = FILES["test_labels"].name
    (data_dir / name).write_bytes(b"not gzip at all")
    shutil.copy(mnist_dir / name, cache / name)
    assert load_file("test_labels", data_dir, cache, mirrors=()).shape == (10_000,)


def test_checksums_are_recorded_for_every_file() -> None:
    sums = mnist.dataset_checksums()
    assert set(sums) == {spec.name for spec in FILES.values()}
    assert all(len(value) == 64 for value in sums.values())
