"""Loading the MNIST data set from its four canonical IDX files.

Files are looked up in ``MNIST_DATA_DIR`` first, then in the cache folder; whatever is
missing is downloaded from the public mirrors into the cache. Every file is checked
against the sha256 of its *decompressed* bytes (the ``.gz`` wrappers differ between
mirrors, the content does not), so a corrupt or tampered file is never used.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from shared.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdxFile:
    name: str
    sha256: str  # of the decompressed bytes
    size: int  # decompressed


FILES: dict[str, IdxFile] = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte.gz",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        47_040_016,
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte.gz",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        60_008,
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte.gz",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        7_840_016,
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte.gz",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        10_008,
    ),
}

# Tried in order; all serve byte-identical content once decompressed.
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

Split = Literal["train", "test"]


@dataclass(frozen=True)
class MnistSplit:
    images: np.ndarray  # (n, 28, 28) uint8, white digit on black
    labels: np.ndarray  # (n,) uint8

    def __len__(self) -> int:
        return len(self.labels)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes) -> np.ndarray:
    """Parse decompressed IDX bytes (uint8 payload only, which is all MNIST uses)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError("Not an IDX file (bad magic number).")
    if data[2] != 0x08:
        raise DatasetError(f"Unsupported IDX element type 0x{data[2]:02x}; expected uint8.")
    ndim = data[3]
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise DatasetError("Truncated IDX header.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    payload = np.frombuffer(data, dtype=np.uint8, offset=header_end)
    if payload.size != expected:
        raise DatasetError(f"IDX payload has {payload.size} bytes, header says {expected}.")
    return payload.reshape(shape)


def _read_verified(path: Path, spec: IdxFile) -> bytes | None:
    """Decompressed bytes of ``path`` if they match the checksum, else None (logged)."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        log.warning("mnist: %s is unreadable (%s); ignoring it", path, exc)
        return None
    digest = sha256_hex(data)
    if digest != spec.sha256:
        log.warning("mnist: %s fails its checksum (sha256 %s); ignoring it", path, digest)
        return None
    return data


def _cache(raw: bytes, dest: Path) -> None:
    """Keep a verified download; a cache that cannot be written only costs the next run a
    download, so it is logged, not raised."""
    tmp_name = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Written atomically, so a crash never leaves a half file that looks complete.
        with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
            tmp_name = tmp.name
            tmp.write(raw)
        os.replace(tmp_name, dest)
    except OSError as exc:
        log.warning("mnist: could not cache %s (%s); using it uncached", dest, exc)
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _download(spec: IdxFile, dest: Path, mirrors: tuple[str, ...]) -> bytes:
    errors: list[str] = []
    for base in mirrors:
        url = base + spec.name
        log.info("mnist: downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (fixed URLs)
                raw = response.read()
        except (OSError, http.client.HTTPException) as exc:  # a dropped read is not an OSError
            errors.append(f"{url}: {exc}")
            continue
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            errors.append(f"{url}: not gzip ({exc})")
            continue
        if sha256_hex(data) != spec.sha256:
            errors.append(f"{url}: checksum mismatch")
            continue
        _cache(raw, dest)
        return data
    raise DatasetError(
        f"Could not download MNIST's {spec.name}; tried " + "; ".join(errors) + ". Offline? "
        "Set MNIST_DATA_DIR to a folder holding the four MNIST IDX .gz files."
    )


def load_file(
    key: str,
    data_dir: Path | None,
    cache_dir: Path,
    mirrors: tuple[str, ...] = MIRRORS,
) -> np.ndarray:
    """One IDX file as an array, from ``data_dir``, the cache, or a mirror (in that order)."""
    spec = FILES[key]
    for folder in (data_dir, cache_dir):
        if folder is not None and (folder / spec.name).is_file():
            data = _read_verified(folder / spec.name, spec)
            if data is not None:
                return parse_idx(data)
    return parse_idx(_download(spec, cache_dir / spec.name, mirrors))


def load_split(
    split: Split,
    data_dir: Path | None,
    cache_dir: Path,
    limit: int | None = None,
    mirrors: tuple[str, ...] = MIRRORS,
) -> MnistSplit:
    images = load_file(f"{split}_images", data_dir, cache_dir, mirrors)
    labels = load_file(f"{split}_labels", data_dir, cache_dir, mirrors)
    if len(images) != len(labels):
        raise DatasetError(f"{split}: {len(images)} images but {len(labels)} labels.")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return MnistSplit(images=images, labels=labels)


def dataset_checksums() -> dict[str, str]:
    """The checksums a trained model records, so its data is traceable."""
    return {spec.name: spec.sha256 for spec in FILES.values()}
