"""Turn any decoded upload into what an MNIST digit looks like.

``to_mnist(image)`` returns a (28, 28) float32 array in [0, 1], white digit on black,
prepared the way MNIST was: the digit's bounding box is scaled (aspect ratio kept, with
anti-aliasing) to fit a 20x20 box, the result is placed in a 28x28 field so that its
centre of mass (ink-weighted, pixel-index coordinates) lands on (14, 14), and the grey
levels are stretched to the full range.

Pipeline
1. EXIF orientation is applied; the mode is canonicalised (palette, 16-bit, float,
   premultiplied, CMYK ... -> L / RGB / LA / RGBA / F plus a value scale to [0, 1]).
2. Stage 1 works on a box-reduced copy (longest side <= ``WORK_MAX``): transparency is
   composited onto a colour that contrasts with the opaque strokes (so whatever RGB lies
   under alpha = 0 never matters), the background colour and noise level are estimated from
   the border ring, and a signed "ink" map is the projection of (pixel - background) onto
   the ink colour direction (this decides polarity and handles tinted/coloured images).
3. The ink is segmented (light smoothing when noisy, a hysteresis threshold relative to the
   stroke level and the noise), connected components far from the digit or tiny are dropped.
   The digit's box is its strong ink's, widened only where faint ink reaches well beyond it.
4. Stage 2: if the digit is small in the reduced copy but the source has more pixels, the
   digit's region is cropped from the full-resolution source and re-analysed there.
5. The digit's box is resampled into <= 20x20, placed by centre of mass and stretched.
6. Grey ink is lifted toward full strength (each value to the power ``ink_gamma``). MNIST
   was made from black-and-white scans, so its strokes are solid and grey only at their
   edges; a stroke that arrives grey (a hairline, a pencil line, a thin line scanned at low
   resolution) would otherwise read weaker than MNIST's strokes (README, the ink round).
   A model records the lift it was trained with; ``shared.inference`` passes it here, so a
   model trained before the lift existed reads as it was trained (``ink_gamma=1``).

A 28x28 greyscale image that already looks like MNIST (dark border, 20-pixel box, centre
of mass at the centre) takes a fast path and is only stretched, not lifted, as the model
saw MNIST's own digits in training. An MNIST digit that misses the fast path (shifted,
inverted, in colour) goes the general way and is lifted. ``normalise`` also says which
way an image went: a model with two heads reads fast-path images with its MNIST head.

``NoDigitFound`` is raised when there is nothing that stands out from the background.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple, cast

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from shared.errors import NoDigitFound

__all__ = ["NoDigitFound", "Normalised", "normalise", "normalise_many", "to_mnist"]

WORK_MAX = 256  # longest side of the stage-1 working copy
DETAIL_MIN = 56  # below this digit size (working px) re-crop from the source if it has more
DETAIL_TARGET = 96  # digit size (px) aimed at when re-cropping from the source
MIN_CONTRAST = 0.06  # minimum ink contrast (fraction of full range) to count as a digit
NOISE_K = 6.0  # ... and it must stand this many noise sigmas above the background
STRONG = 0.35  # of the stroke level: ink that starts a stroke
FAINT = 0.10  # ... and ink that continues one (hysteresis)
FAINT_REACH = 0.15  # of the digit's size: faint ink reaching further out is a stroke, not a halo
# (0.15 and 0.2 before the faint-ink round, README: the lower two kept the grey loops of
# scanned 9s and 8s that read as 1, 3 or 5, and left the real-world sets as they were)
INK_GAMMA = 0.7  # step 6, for new models (chosen on the dev sets: 0.5 swelled blurred blobs)
BOX = 20  # MNIST: digit box size
SIZE = 28  # MNIST: field size
_EXIF_ORIENTATION = 0x0112
_STRUCT8 = np.ones((3, 3), bool)


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


class Normalised(NamedTuple):
    """What the normaliser made of an upload."""

    pixels: np.ndarray  # (28, 28) float32 in [0, 1], white digit on black
    mnist_format: bool  # the upload already was an MNIST digit (the fast path)


def to_mnist(image: Image.Image, ink_gamma: float = INK_GAMMA) -> np.ndarray:
    """Normalise a decoded image to a (28, 28) float32 MNIST-like array in [0, 1];
    ``ink_gamma``: step 6's power (1 leaves grey ink as it is)."""
    return normalise(image, ink_gamma).pixels


def normalise(image: Image.Image, ink_gamma: float = INK_GAMMA) -> Normalised:
    """``to_mnist``, and whether the image took the fast path: a model with an MNIST head
    (``shared.model``) scores those with it."""
    image = _oriented(image)
    fast = _fast_path(image)
    if fast is not None:
        return Normalised(fast, mnist_format=True)
    return _general(image, ink_gamma)


def normalise_many(
    images: Iterable[Image.Image], ink_gamma: float = INK_GAMMA
) -> list[Normalised | NoDigitFound]:
    """``normalise`` for each image, in order, with the ``NoDigitFound`` it raises in the
    place of an image without a digit: the same results as one at a time, faster for
    MNIST-like images, whose fast-path checks run once for the batch. The images are taken
    one by one and only 28x28 ones are kept for that, so a batch of photos, given as a
    generator that decodes them, is never in memory all at once."""
    out: list[Normalised | NoDigitFound | None] = []
    held: list[tuple[int, Image.Image]] = []
    # Not enumerate(images): it keeps the last image in its cached tuple while it asks for
    # the next one.
    for upload in images:
        first = _first_pass(upload, ink_gamma)
        del upload  # not to hold this photo while the next one is decoded
        if isinstance(first, Image.Image):
            held.append((len(out), first))
            out.append(None)
        else:
            out.append(first)
    fast_paths = _fast_paths([image for _, image in held])
    for (position, image), fast in zip(held, fast_paths, strict=True):
        if fast is not None:
            out[position] = Normalised(fast, mnist_format=True)
        else:
            out[position] = _general_or_error(image, ink_gamma)
    return cast(list[Normalised | NoDigitFound], out)


def _first_pass(upload: Image.Image, ink_gamma: float) -> Normalised | NoDigitFound | Image.Image:
    """What ``normalise`` makes of ``upload``; or, where the fast path may take it, the
    upload as oriented, for ``_fast_paths`` to check with the rest of its batch."""
    try:
        image = _oriented(upload)
    except NoDigitFound as exc:
        return exc.with_traceback(None)  # as in _general_or_error
    if _mnist_sized(image):
        return image
    return _general_or_error(image, ink_gamma)


def _general_or_error(image: Image.Image, ink_gamma: float) -> Normalised | NoDigitFound:
    """``_general``, or the ``NoDigitFound`` it raises without its traceback: the frames
    would keep the image alive, and only the error's message is ever reported."""
    try:
        return _general(image, ink_gamma)
    except NoDigitFound as exc:
        return exc.with_traceback(None)


def _oriented(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError("to_mnist expects a PIL.Image.Image")
    if image.width < 1 or image.height < 1:
        raise NoDigitFound("The image is empty.")
    return _orient(image)


def _general(image: Image.Image, ink_gamma: float) -> Normalised:
    src, vscale = _canonical(image)
    return Normalised(_normalise(src, vscale, ink_gamma), mnist_format=False)


# --------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------


def _orient(image: Image.Image) -> Image.Image:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not break normalisation
        return image
    if orientation in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def _canonical(image: Image.Image) -> tuple[Image.Image, float]:
    """Return the image in mode L, RGB, LA, RGBA or F, and the factor to map it to [0, 1]."""
    mode = image.mode
    has_trns = "transparency" in image.info
    if mode in ("L", "RGB"):
        if has_trns:  # tRNS chunk on a grey/RGB PNG: one colour is transparent
            return image.convert("LA" if mode == "L" else "RGBA"), 1 / 255
        return image, 1 / 255
    if mode in ("LA", "RGBA"):
        return image, 1 / 255
    if mode in ("P", "PA"):
        if mode == "PA" or has_trns:
            return image.convert("RGBA"), 1 / 255
        return image.convert("RGB"), 1 / 255
    if mode == "La":
        return image.convert("LA"), 1 / 255
    if mode == "RGBa":
        return image.convert("RGBA"), 1 / 255
    if mode == "1":
        return image.convert("L"), 1 / 255
    if mode.startswith("I;16"):
        # 16-bit container: infer the bit depth actually used (8, 10, 12, 14 or 16 bits,
        # e.g. 12-bit scanner data) from the largest value and scale that range to [0, 1]
        f = image.convert("F")
        hi = cast(tuple[float, float], f.getextrema())[1]  # one band: (min, max)
        depth = next((b for b in (8, 10, 12, 14) if hi < (1 << b)), 16)
        return f, 1 / ((1 << depth) - 1)
    if mode in ("I", "F"):
        f = image.convert("F") if mode == "I" else image
        lo, hi = cast(tuple[float, float], f.getextrema())  # one band: (min, max)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            arr = np.nan_to_num(np.asarray(f, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            f = Image.fromarray(arr, "F")
            lo, hi = cast(tuple[float, float], f.getextrema())
        if mode == "F" and lo >= 0 and hi <= 1.0:
            return f, 1.0
        if lo >= 0 and hi <= 255:
            return f, 1 / 255
        if lo >= 0 and hi <= 65535:
            return f, 1 / 65535
        # out-of-range data: map its own range (never clip)
        span = hi - lo
        if span <= 0:
            raise NoDigitFound("The image is uniform.")
        arr = (np.asarray(f, np.float32) - lo) / span
        return Image.fromarray(arr, "F"), 1.0
    # CMYK, YCbCr, LAB, HSV, RGBX, ...
    if "A" in mode or has_trns:
        return image.convert("RGBA"), 1 / 255
    return image.convert("RGB"), 1 / 255


def _to_array(img: Image.Image, vscale: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, C) float32 colour in [0, 1] and (H, W) alpha in [0, 1] or None."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if vscale != 1.0:
        arr = arr * np.float32(vscale)
    if img.mode in ("LA", "RGBA"):
        return arr[:, :, :-1], arr[:, :, -1]
    return arr, None


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    # Image.reduce box-averages; for LA/RGBA it premultiplies alpha, so the colour hidden
    # under fully transparent pixels never leaks into the result.
    return img if factor <= 1 else img.reduce(factor)


# --------------------------------------------------------------------------------------
# fast path: already MNIST-like
# --------------------------------------------------------------------------------------

_IDX = np.arange(SIZE, dtype=np.float64)
# Of the peak: a pixel above the first is in the digit's half-intensity footprint, one above
# the second is ink at all.
_LEVELS = np.array([0.35, 0.02])


def _mnist_sized(image: Image.Image) -> bool:
    """Whether the fast path may take ``image``: 28x28 greyscale without transparency."""
    return image.size == (SIZE, SIZE) and image.mode == "L" and "transparency" not in image.info


def _fast_paths(images: Sequence[Image.Image]) -> list[np.ndarray | None]:
    """Per image, what the fast path makes of it, or None where it is not MNIST-like.

    The path every MNIST-like upload takes, so the worker's hot path. Its checks run once
    on the stack of a batch's images, in some twenty whole-array calls: at 28x28 the cost
    is numpy's per call, not per pixel. In a batch of 64 that is 11 to 13 us per image
    against 32 to 49 us for the per-image checks it replaced; a lone image pays 55 to 78
    us (timeit, MNIST test digits, three runs on a busy 2-core machine). Its sums are of
    8-bit integers, which numpy adds in 64 bits, so exact: no digit's result depends on
    the batch it came in.
    """
    out: list[np.ndarray | None] = [None] * len(images)
    eligible = [i for i, image in enumerate(images) if _mnist_sized(image)]
    if not eligible:
        return out
    a = np.frombuffer(b"".join(images[i].tobytes() for i in eligible), np.uint8)
    a = a.reshape(len(eligible), SIZE, SIZE)
    lines = np.stack([a, a.transpose(0, 2, 1)], 1)  # (n, 2, 28, 28): rows, then columns
    maxima = lines.max(3)
    peak = maxima[:, 0].max(1).astype(np.float64)
    # Per level (n, 2, 2, 28): which rows and columns hold a pixel above it; the box
    # around them, its longer side (28 for a blank image, which the peak turns away).
    above = maxima[:, None] > (peak[:, None] * _LEVELS)[:, :, None, None]
    side = (SIZE - above[..., ::-1].argmax(3) - above.argmax(3)).max(2)
    profiles = lines.sum(3)  # ink per row, per column
    total = np.maximum(profiles[:, 0].sum(1), 1)  # a blank image's: no division by zero
    centre = profiles @ _IDX / total[:, None]  # centre of mass, (y, x)
    ok = (
        (peak >= 64)
        & ((side[:, 0] == 19) | (side[:, 0] == 20))  # the 20-pixel box MNIST uses
        # Nothing faint far outside it: no specks or noise, and a black border (ink on
        # two opposite sides makes this box 28 wide).
        & (side[:, 1] <= 21)
        & (np.abs(centre - 14.0) <= 0.75).all(1)
    )
    if ok.any():
        digits = a[ok].astype(np.float32) * (1.0 / peak[ok]).astype(np.float32)[:, None, None]
        for i, digit in zip(np.flatnonzero(ok).tolist(), digits, strict=True):
            out[eligible[i]] = digit
    return out


def _fast_path(image: Image.Image) -> np.ndarray | None:
    """``_fast_paths`` for one image."""
    return _fast_paths([image])[0]


# --------------------------------------------------------------------------------------
# general path
# --------------------------------------------------------------------------------------


def _ring_mask(h: int, w: int) -> np.ndarray:
    """Boolean mask of the outer ring, width ~3% of the short side (>= 1 px)."""
    b = max(1, int(round(0.03 * min(h, w))))
    m = np.ones((h, w), bool)
    if 2 * b < h and 2 * b < w:
        m[b:-b, b:-b] = False
    return m


def _composite(colour: np.ndarray, alpha: np.ndarray, backdrop: float) -> np.ndarray:
    a = alpha[:, :, None]
    return cast(np.ndarray, colour * a + np.float32(backdrop) * (1.0 - a))


class _Grid:
    """Where the pixels of a (possibly reduced, cropped) array sit in the source image,
    in normalised source coordinates (0..1), so a background model fitted on one array
    can be evaluated on another."""

    def __init__(
        self,
        shape: tuple[int, ...],
        origin: tuple[int, int] = (0, 0),
        step: int = 1,
        full: tuple[int, int] = (1, 1),
    ) -> None:
        h, w = shape[:2]
        ox, oy = origin
        W, H = full
        self.u = ((ox + (np.arange(w, dtype=np.float32) + 0.5) * step) / W - 0.5).astype(np.float32)
        self.v = ((oy + (np.arange(h, dtype=np.float32) + 0.5) * step) / H - 0.5).astype(np.float32)


class _Inker:
    """Maps pixels to signed ink intensity; fitted on the stage-1 copy, reused in stage 2.

    Background = a plane per channel fitted (robustly) to the border ring, which removes
    tint and smooth uneven lighting; ink = (pixel - background) projected on the ink
    colour direction, so polarity and colour are decided by the image itself."""

    def __init__(self, colour: np.ndarray, alpha: np.ndarray | None, grid: _Grid):
        self.backdrop = None
        if alpha is not None and float(alpha.min()) < 0.98:
            opaque = alpha > 0.5
            lum = float(colour[opaque].mean()) if opaque.any() else 0.0
            # put the strokes on a backdrop that contrasts with them
            self.backdrop = 1.0 if lum < 0.5 else 0.0
            colour = _composite(colour, alpha, self.backdrop)
        h, w, c = colour.shape
        ring = _ring_mask(h, w)
        ys, xs = np.nonzero(ring)
        vals = colour[ring].astype(np.float64)  # (n, C)
        med = np.median(vals, axis=0)
        dev = np.abs(vals - med)
        mad = np.median(dev, axis=0) * 1.4826
        self.coef = np.zeros((c, 3), np.float32)
        self.coef[:, 0] = med
        if len(vals) >= 12 and min(h, w) >= 8:
            A = np.stack([np.ones(len(xs)), grid.u[xs], grid.v[ys]], 1).astype(np.float64)
            # fit on pixels near the median level only (ink touching the border is ignored)
            ok = np.all(dev <= np.maximum(3 * mad, 0.02), axis=1)
            if ok.sum() >= 12:
                sol, *_ = np.linalg.lstsq(A[ok], vals[ok], rcond=None)  # (3, C)
                self.coef = sol.T.astype(np.float32)
        resid = vals - self._plane_at(grid.u[xs], grid.v[ys])
        self.noise = float(1.4826 * np.median(np.abs(resid)))
        d = colour - self.plane(grid)
        dist = np.sqrt(np.einsum("ijc,ijc->ij", d, d)) if c > 1 else np.abs(d[:, :, 0])
        top = float(dist.max())
        if top < MIN_CONTRAST:
            raise NoDigitFound("The image has no contrast.")
        sel = dist >= max(0.5 * top, min(4.0 * self.noise, 0.9 * top))
        v = d[sel].sum(axis=0)
        norm = float(np.linalg.norm(v))
        if norm == 0.0:
            raise NoDigitFound("No ink found.")
        self.v = (v / norm).astype(np.float32)
        self.first = self._project(d)

    def _plane_at(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        k = self.coef
        return cast(np.ndarray, k[:, 0] + u[:, None] * k[:, 1] + v[:, None] * k[:, 2])

    def plane(self, grid: _Grid) -> np.ndarray:
        k = self.coef
        background: np.ndarray = (
            k[:, 0][None, None, :]
            + grid.u[None, :, None] * k[:, 1][None, None, :]
            + grid.v[:, None, None] * k[:, 2][None, None, :]
        ).astype(np.float32)
        return background

    def _project(self, d: np.ndarray) -> np.ndarray:
        if d.shape[2] == 1:
            return cast(np.ndarray, d[:, :, 0] * self.v[0])
        return cast(np.ndarray, d @ self.v)

    def apply(self, colour: np.ndarray, alpha: np.ndarray | None, grid: _Grid) -> np.ndarray:
        if self.backdrop is not None:
            if alpha is None:
                alpha = np.ones(colour.shape[:2], np.float32)
            colour = _composite(colour, alpha, self.backdrop)
        return self._project(colour - self.plane(grid))


def _segment(ink: np.ndarray, noise: float) -> tuple[np.ndarray, tuple[int, int, int, int], float]:
    """Find the digit. Returns (weights, bbox (y0, x0, y1, x1), stroke level)."""
    smooth = noise > 0.01
    if smooth:
        sm = ndimage.gaussian_filter(ink, 1.0, truncate=2.5)
        noise_sm = noise * 0.3
    else:
        sm = ink
        noise_sm = noise
    peak = float(sm.max())
    if peak < max(MIN_CONTRAST, NOISE_K * noise_sm):
        raise NoDigitFound("Nothing stands out from the background.")
    level = float(np.median(sm[sm > 0.5 * peak]))  # stroke level
    strong = sm > max(STRONG * level, 4.0 * noise_sm)
    faint = sm > max(FAINT * level, 4.0 * noise_sm)
    labels, n = ndimage.label(faint, structure=_STRUCT8)
    # Hysteresis: faint ink counts where it continues a strong stroke. Hairline upstrokes
    # (some handwriting fonts) and blurred, low-contrast scans otherwise break a digit
    # into pieces, of which only the largest was kept.
    touching = np.zeros(n + 1, bool)
    touching[labels[strong]] = True
    touching[0] = False
    if not touching[1:].all():
        renumber = np.cumsum(touching) * touching  # the kept components, numbered 1..n
        labels = renumber[labels]
        n = int(touching.sum())
    mask = labels > 0
    if n == 0:
        raise NoDigitFound("No ink found.")
    mass = np.bincount(labels.ravel(), weights=sm.ravel(), minlength=n + 1)[1:]
    # boxes of the strong ink only: a blurred halo or a hairline's tip does not widen them
    # (nor the digit's: ``_with_faint_strokes``)
    boxes = ndimage.find_objects(labels * strong, max_label=n)
    order = np.argsort(-mass)
    main = int(order[0])
    if mass[main] <= 0:
        raise NoDigitFound("No ink found.")
    keep = {main}
    y0, y1 = boxes[main][0].start, boxes[main][0].stop
    x0, x1 = boxes[main][1].start, boxes[main][1].stop
    changed = True
    while changed:  # grow the digit by nearby, non-negligible components
        changed = False
        reach = 0.25 * max(y1 - y0, x1 - x0) + 1
        for index in order[1:]:
            i = int(index)
            if i in keep or mass[i] < 0.02 * mass[main]:
                continue
            by, bx = boxes[i]
            gap_y = max(0, by.start - y1, y0 - by.stop)
            gap_x = max(0, bx.start - x1, x0 - bx.stop)
            if max(gap_y, gap_x) <= reach:
                keep.add(i)
                y0, y1 = min(y0, by.start), max(y1, by.stop)
                x0, x1 = min(x0, bx.start), max(x1, bx.stop)
                changed = True
    # a digit needs some substance: pure speckle noise gives only tiny blobs
    area = int(sum(np.count_nonzero(labels[boxes[i]] == i + 1) for i in keep))
    if area < 3:
        raise NoDigitFound("Only specks found.")
    if len(keep) == n:
        region = mask
    else:
        region = np.isin(labels, np.fromiter((i + 1 for i in keep), np.int32))
    # before the dilation below, so that the fringe it adds does not count as reach
    y0, x0, y1, x1 = _with_faint_strokes(region, (y0, x0, y1, x1))
    # keep anti-aliased fringes next to the kept strokes, drop everything else
    region = ndimage.binary_dilation(region, _STRUCT8, iterations=2)
    weights = np.where(region, ink if not smooth else 0.5 * (ink + sm), 0.0)
    np.maximum(weights, 0.0, out=weights)
    return weights.astype(np.float32), (y0, x0, y1, x1), level


def _with_faint_strokes(
    region: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """``box`` (the strong ink's) widened on a side where the digit's faint ink reaches more
    than ``FAINT_REACH`` of its size beyond it, but not to the image's edge. A thin pen's
    stroke scanned at low resolution reads grey, and cutting it off changes the digit (README,
    the faint-stroke round); a halo or a hairline's tip stays near the strokes, and a ruled
    line, a shadow or the paper's edge runs off the image."""
    y0, x0, y1, x1 = box
    height, width = region.shape
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    reach = FAINT_REACH * max(y1 - y0, x1 - x0)
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (
        top if 0 < top < y0 - reach else y0,
        left if 0 < left < x0 - reach else x0,
        bottom if y1 + reach < bottom < height else y1,
        right if x1 + reach < right < width else x1,
    )


def _normalise(src: Image.Image, vscale: float, ink_gamma: float) -> np.ndarray:
    W, H = src.size
    factor = max(1, math.ceil(max(W, H) / WORK_MAX))
    colour, alpha = _to_array(_reduce(src, factor), vscale)
    inker = _Inker(colour, alpha, _Grid(colour.shape, (0, 0), factor, (W, H)))
    ink = inker.first
    noise = inker.noise
    weights, (y0, x0, y1, x1), _ = _segment(ink, noise)

    side = max(y1 - y0, x1 - x0)
    if factor > 1 and side < DETAIL_MIN:
        # stage 2: re-crop the digit from the full-resolution source
        margin = 0.35 * side + 2
        cx0 = max(0, int((x0 - margin) * factor))
        cy0 = max(0, int((y0 - margin) * factor))
        cx1 = min(W, int(math.ceil((x1 + margin) * factor)))
        cy1 = min(H, int(math.ceil((y1 + margin) * factor)))
        f2 = max(1, int(side * factor // DETAIL_TARGET))
        crop = _reduce(src.crop((cx0, cy0, cx1, cy1)), f2)
        c2, a2 = _to_array(crop, vscale)
        ink = inker.apply(c2, a2, _Grid(c2.shape, (cx0, cy0), f2, (W, H)))
        noise = noise * factor / f2  # box-averaging white noise: sigma ~ 1 / side
        weights, (y0, x0, y1, x1), _ = _segment(ink, noise)
        factor = f2
    return _place(weights, (y0, x0, y1, x1), noise, ink_gamma)


def _place(
    weights: np.ndarray, bbox: tuple[int, int, int, int], noise: float, ink_gamma: float
) -> np.ndarray:
    y0, x0, y1, x1 = bbox
    h, w = y1 - y0, x1 - x0
    s = BOX / max(h, w)
    tw = max(1, int(round(w * s)))
    th = max(1, int(round(h * s)))
    # source box with exactly the target aspect, centred on the digit's box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sw, sh = tw / s, th / s
    m = 1  # one output pixel of margin for anti-aliased fringes
    box = (cx - sw / 2 - m / s, cy - sh / 2 - m / s, cx + sw / 2 + m / s, cy + sh / 2 + m / s)
    pw, ph = tw + 2 * m, th + 2 * m
    # cut that box (zero-padded where it leaves the array) so PIL can resample it
    ix0, iy0 = int(math.floor(box[0])), int(math.floor(box[1]))
    ix1, iy1 = int(math.ceil(box[2])), int(math.ceil(box[3]))
    sub = np.zeros((iy1 - iy0, ix1 - ix0), np.float32)
    H, W = weights.shape
    sy0, sx0, sy1, sx1 = max(0, iy0), max(0, ix0), min(H, iy1), min(W, ix1)
    sub[sy0 - iy0 : sy1 - iy0, sx0 - ix0 : sx1 - ix0] = weights[sy0:sy1, sx0:sx1]
    box = (box[0] - ix0, box[1] - iy0, box[2] - ix0, box[3] - iy0)
    img = Image.fromarray(sub, "F")
    resample = Image.Resampling.BILINEAR if s < 1 else Image.Resampling.BICUBIC
    patch = np.array(img.resize((pw, ph), resample, box=box), dtype=np.float32)
    np.maximum(patch, 0.0, out=patch)
    peak = float(patch.max())
    if peak <= 0:
        raise NoDigitFound("No ink found.")
    # residual background noise after resampling: soft floor
    floor = min(3.0 * noise * min(1.0, s), 0.15 * peak)
    if floor > 0:
        patch = np.maximum(patch - floor, 0.0)
        peak -= floor
    patch /= np.float32(peak)
    total = float(patch.sum(dtype=np.float64))
    cy_p = float(patch.sum(1) @ np.arange(ph)) / total
    cx_p = float(patch.sum(0) @ np.arange(pw)) / total
    top = int(round(14.0 - cy_p))
    left = int(round(14.0 - cx_p))
    out = np.zeros((SIZE, SIZE), np.float32)
    oy0, ox0 = max(0, top), max(0, left)
    oy1, ox1 = min(SIZE, top + ph), min(SIZE, left + pw)
    if oy1 > oy0 and ox1 > ox0:
        out[oy0:oy1, ox0:ox1] = patch[oy0 - top : oy1 - top, ox0 - left : ox1 - left]
    mx = float(out.max())
    if mx <= 0:
        raise NoDigitFound("No ink found.")
    if mx != 1.0:
        out /= np.float32(mx)
    if ink_gamma != 1.0:  # step 6: grey ink lifted; 0 and 1 stay where they are
        np.power(out, np.float32(ink_gamma), out=out)
    return out
