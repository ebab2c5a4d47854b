"""More ways of writing a digit than MNIST's training images show, for training.

``augment(images, labels, seed)`` returns one new version of every training digit, as
(n, 784) float32 pixels with their labels. Each is:

1. bent: a random rotation, shear and stretch, and a smooth elastic field (a hand is never
   steady, and MNIST's writers were few);
2. made bolder or finer (a marker, a fine pen) for some;
3. for three in ten, scanned onto a grid of 8 to 16 pixels and enlarged again, blocky or
   blurred, as low-resolution sources are;
4. put through ``shared.normalize.to_mnist``, the code every upload goes through, so the
   model learns digits as the service will show them to it.

The work is split into chunks with seeds of their own, spread over the machine's cores:
the same seed gives the same images whatever the number of cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np
from joblib import Parallel, delayed
from PIL import Image
from scipy import ndimage

from shared.errors import ServiceError
from shared.normalize import to_mnist

SIDE = 28
CHUNK = 2048
ROTATE_DEGREES = 8.0
SHEAR = 0.25
STRETCH = 0.15  # log of the largest scale change along each axis
ELASTIC_PIXELS = 1.0  # largest displacement of the smooth field
ELASTIC_SMOOTHING = 4.0  # its Gaussian sigma, pixels
BOLDER_OR_FINER = 0.4  # share of digits whose strokes change width
SCANNED = 0.3  # share of digits scanned at low resolution
SCANS_STREAM = 1  # spawn key of ``enlarge_scans``' chunk seeds: none is one of ``augment``'s
_FILTERS = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


def _bend(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(images)
    grid = np.arange(SIDE, dtype=np.float32) - (SIDE - 1) / 2
    angle = np.deg2rad(rng.uniform(-ROTATE_DEGREES, ROTATE_DEGREES, n)).astype(np.float32)
    shear = rng.uniform(-SHEAR, SHEAR, n).astype(np.float32)
    sx, sy = np.exp(rng.uniform(-STRETCH, STRETCH, (2, n))).astype(np.float32)
    cos, sin = np.cos(angle), np.sin(angle)
    # where each output pixel samples the source: rotation, then shear, then stretch
    rr, rc = (cos / sy)[:, None, None], ((shear - sin) / sy)[:, None, None]
    cr, cc = (sin / sx)[:, None, None], (cos / sx)[:, None, None]
    rows = rr * grid[None, :, None] + rc * grid[None, None, :] + (SIDE - 1) / 2
    cols = cr * grid[None, :, None] + cc * grid[None, None, :] + (SIDE - 1) / 2
    field = rng.uniform(-1, 1, (2, n, SIDE, SIDE)).astype(np.float32)
    field = ndimage.gaussian_filter(field, (0, 0, ELASTIC_SMOOTHING, ELASTIC_SMOOTHING))
    field *= ELASTIC_PIXELS / (np.abs(field).reshape(2, n, -1).max(2)[:, :, None, None] + 1e-6)
    which = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], rows.shape)
    bent: np.ndarray = ndimage.map_coordinates(
        images, [which, rows + field[0], cols + field[1]], order=1, mode="constant"
    )
    return bent


def _pen(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pick = rng.random(len(images))
    out = images.copy()
    bolder = pick < BOLDER_OR_FINER / 2
    finer = (pick >= BOLDER_OR_FINER / 2) & (pick < BOLDER_OR_FINER)
    if bolder.any():
        out[bolder] = ndimage.grey_dilation(images[bolder], size=(1, 2, 2))
    if finer.any():
        thinned = ndimage.grey_erosion(images[finer], size=(1, 2, 2))
        faded = thinned.reshape(len(thinned), -1).max(1) < 0.3  # nothing left: keep it
        thinned[faded] = images[finer][faded]
        out[finer] = thinned
    return out


def _scan(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit on a grid of 8 to 16 pixels (its longer side), enlarged 3x to 8x."""
    rows, cols = np.flatnonzero(image.max(1) > 0.05), np.flatnonzero(image.max(0) > 0.05)
    ink = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = int(rng.integers(8, 17)) / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    small = np.asarray(Image.fromarray(ink, "F").resize(size, Image.Resampling.BOX))
    if rng.random() < 0.5:  # few grey levels, as 4x4 block counts give
        small = np.round(small / max(float(small.max()), 1e-6) * 16) / 16
    return _enlarge(small, rng)


def _enlarge(small: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A low-resolution digit enlarged 3x to 8x by a usual filter, blurred half the time."""
    small = np.pad(small, 1)
    factor = float(rng.uniform(3, 8))
    big_size = (round(small.shape[1] * factor), round(small.shape[0] * factor))
    filter_ = _FILTERS[int(rng.integers(len(_FILTERS)))]
    big = np.asarray(Image.fromarray(small.astype(np.float32), "F").resize(big_size, filter_))
    if rng.random() < 0.5:
        big = ndimage.gaussian_filter(big, float(rng.uniform(0.2, 0.8)) * factor)
    return big


def as_upload(ink: np.ndarray) -> np.ndarray | None:
    """Ink in [0, 1] as dark ink on white paper, as an upload would be, through the
    normaliser: (784,) pixels, or None where it finds no digit."""
    paper = np.round(255 - np.clip(ink, 0, 1) * 255).astype(np.uint8)
    try:
        return to_mnist(Image.fromarray(paper, "L")).reshape(-1)
    except ServiceError:  # bent or scanned beyond recognition: left out
        return None


def _chunk(images: np.ndarray, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, index])
    digits = _pen(_bend(images.astype(np.float32) / np.float32(255), rng), rng)
    scanned = rng.random(len(digits)) < SCANNED
    sources = (_scan(digit, rng) if scanned[i] else digit for i, digit in enumerate(digits))
    return _uploads(sources)


def _uploads(sources: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The sources that stay digits, as (m, 784) pixels, and their indices."""
    out, kept = [], []
    for i, source in enumerate(sources):
        pixels = as_upload(source)
        if pixels is not None:
            out.append(pixels)
            kept.append(i)
    return np.asarray(out, np.float32).reshape(-1, SIDE * SIDE), np.asarray(kept, np.int64)


def _scans_chunk(scans: np.ndarray, seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    # Not [seed, 1, index]: NumPy drops trailing zeros, and [seed, 1, 0] is augment's chunk 1.
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SCANS_STREAM, index)))
    return _uploads(_enlarge(scan, rng) for scan in scans)


def _in_parallel(
    work: Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]],
    items: np.ndarray,
    labels: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    starts = range(0, len(items), CHUNK)
    if not starts:
        return np.zeros((0, SIDE * SIDE), np.float32), labels[:0]
    jobs = min(os.cpu_count() or 1, len(starts))
    parts = Parallel(n_jobs=jobs)(
        delayed(work)(items[start : start + CHUNK], seed, index)
        for index, start in enumerate(starts)
    )
    pixels = np.concatenate([part[0] for part in parts])
    kept = np.concatenate([start + part[1] for start, part in zip(starts, parts, strict=True)])
    return pixels, labels[kept]


def augment(images: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One new version of each (n, 28, 28) uint8 digit: (m, 784) float32 pixels in [0, 1]
    and their m labels (m <= n: a digit the normaliser no longer finds is left out)."""
    return _in_parallel(_chunk, images, labels, seed)


def enlarge_scans(
    scans: np.ndarray, labels: np.ndarray, copies: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` uploads of each low-resolution scan ((n, h, w) ink in [0, 1], such as
    ``shared.optdigits`` loads): enlarged as in step 3, each copy its own way, put on
    paper and through the normaliser. (m, 784) float32 pixels and their m labels."""
    repeated = np.concatenate([scans] * copies) if copies > 0 else scans[:0]
    return _in_parallel(_scans_chunk, repeated, np.tile(labels, copies), seed)
