"""Synthetic "real-world" uploads for measuring the model the way users feed it.

Evaluation tooling of the worker side: ``python -m worker.evaluate`` reports the model's
accuracy on these sets, and the tests (``tests/test_realworld.py``, the live-service test
in ``tests/integration/``) use the same generator. The service itself never imports it.

``make_sets(test_images, test_labels, n=200, seed=0)`` builds, from MNIST *test* digits
(and DejaVu fonts), ``{"photo": [...], "canvas": [...], "large": [...], "typed": [...]}``,
each a list of ``(encoded image file bytes, label)``:

- photo:  dark ink on tinted, unevenly lit, noisy, slightly blurred paper; the digit
          upscaled to 60-150 px, placed off-centre in a 200-400 px frame; JPEG q60-90,
          about half RGB, half greyscale.
- canvas: what a browser canvas exports: 280x280 RGBA PNG, opaque strokes (black or a
          colour) on a fully transparent background, zero or random RGB under alpha 0;
          the digit drawn at canvas scale (upscaled MNIST intensity used as alpha).
- large:  280-600 px frames, digit off-centre, either polarity; 16-bit greyscale PNGs
          and palette PNGs (mixed).
- typed:  digits 0-9 rendered with DejaVu fonts (Sans/Serif/Mono, regular/bold/oblique),
          random size, position and slight rotation, either polarity, PNG.

Needs numpy and Pillow (both in the worker's requirements) and, for the typed set, the
DejaVu TrueType fonts in ``FONT_DIR`` (Debian's ``fonts-dejavu-core`` and
``fonts-dejavu-extra``; the slim worker image has neither, so run it where they are).

The same seed always gives the same bytes (numpy's PCG64 and Pillow's encoders are
deterministic).  CLI: ``python -m worker.realworld OUTDIR [--n N] [--seed S]`` writes the
files as OUTDIR/<set>/<index>_<label>.<ext>.
"""

from __future__ import annotations

import argparse
import io
import os
from typing import Any, cast

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from shared.mnist import load_split
from shared.settings import get_settings

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONTS = [
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
]
SET_NAMES = ("photo", "canvas", "large", "typed")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _digit_alpha(img28: np.ndarray, height: int, rng: np.random.Generator) -> np.ndarray:
    """Crop an MNIST digit to its ink box and upscale it so that its height is ``height``.

    Returns float32 coverage in [0, 1] (smooth, anti-aliased strokes)."""
    a = img28.astype(np.float32) / 255.0
    rows = np.flatnonzero(a.max(1) > 0)
    cols = np.flatnonzero(a.max(0) > 0)
    a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    a = np.pad(a, 1)
    h, w = a.shape
    s = height / (h - 2)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    up = Image.fromarray(a, "F").resize((nw, nh), Image.Resampling.BICUBIC)
    out: np.ndarray = np.clip(np.asarray(up, np.float32), 0, 1)
    # sharpen the edges a bit like a pen stroke (the upscaled MNIST is blurry)
    gamma = float(rng.uniform(0.6, 1.0))
    out = np.clip((out - 0.08) / 0.84, 0, 1) ** gamma
    return out


def _fit(patch: np.ndarray, max_h: int, max_w: int) -> np.ndarray:
    """Shrink ``patch`` (aspect kept) if it is larger than max_h x max_w."""
    h, w = patch.shape
    s = min(1.0, max_h / h, max_w / w)
    if s >= 1.0:
        return patch
    size = (max(1, int(w * s)), max(1, int(h * s)))
    return np.asarray(
        Image.fromarray(patch, "F").resize(size, Image.Resampling.BILINEAR), np.float32
    )


def _place(frame_hw: tuple[int, int], patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put ``patch`` at a random position (fully inside) of a zero frame."""
    H, W = frame_hw
    patch = _fit(patch, H - 4, W - 4)
    h, w = patch.shape
    y = int(rng.integers(0, max(1, H - h + 1)))
    x = int(rng.integers(0, max(1, W - w + 1)))
    out = np.zeros((H, W), np.float32)
    out[y : y + h, x : x + w] = patch[: H - y, : W - x]
    return out


def _png(img: Image.Image, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _gradient(height: int, width: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth illumination field around 1.0 (linear ramp in a random direction)."""
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (np.cos(ang) * (xx / width - 0.5) + np.sin(ang) * (yy / height - 0.5)).astype(np.float32)
    field: np.ndarray = 1.0 + strength * t
    return field


# --------------------------------------------------------------------------------------
# the four sets
# --------------------------------------------------------------------------------------


def _photo(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    H, W = (int(v) for v in rng.integers(200, 401, size=2))
    size = int(rng.integers(60, 151))
    size = min(size, int(0.8 * min(H, W)))
    a = _place((H, W), _digit_alpha(img28, size, rng), rng)
    paper = rng.uniform(160, 250) + rng.uniform(-25, 25, size=3)  # tinted paper
    paper = np.clip(paper, 120, 255).astype(np.float32)
    ink = rng.uniform(10, 90) + rng.uniform(-20, 20, size=3)  # dark, possibly bluish ink
    ink = np.clip(ink, 0, 110).astype(np.float32)
    light = _gradient(H, W, float(rng.uniform(0.0, 0.2)), rng)[:, :, None]
    img = (paper * (1 - a[:, :, None]) + ink * a[:, :, None]) * light
    img += rng.normal(0, rng.uniform(2, 12), size=img.shape).astype(np.float32)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    pil = pil.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    if rng.random() < 0.5:
        pil = pil.convert("L")
    return _jpeg(pil, int(rng.integers(60, 91)))


def _canvas(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    S = 280
    size = int(rng.integers(150, 241))
    patch = _fit(_digit_alpha(img28, size, rng), S - 16, S - 16)
    # users draw roughly in the middle
    H = W = S
    h, w = patch.shape
    cy = int(np.clip(S / 2 + rng.normal(0, 20) - h / 2, 0, S - h))
    cx = int(np.clip(S / 2 + rng.normal(0, 20) - w / 2, 0, S - w))
    a = np.zeros((H, W), np.float32)
    a[cy : cy + h, cx : cx + w] = patch[: H - cy, : W - cx]
    rgba = np.zeros((H, W, 4), np.uint8)
    if rng.random() < 0.7:
        stroke = np.zeros(3, np.uint8)
    else:
        stroke = rng.integers(0, 256, size=3).astype(np.uint8)
    if rng.random() < 0.5:  # random garbage under the transparent pixels
        rgba[:, :, :3] = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    alpha = np.round(a * 255).astype(np.uint8)
    visible = alpha > 0
    rgba[visible, :3] = stroke
    rgba[:, :, 3] = alpha
    return _png(Image.fromarray(rgba, "RGBA"))


def _large(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    H, W = (int(v) for v in rng.integers(280, 601, size=2))
    size = int(rng.integers(60, int(0.9 * min(H, W))))
    a = _place((H, W), _digit_alpha(img28, size, rng), rng)
    bg = rng.uniform(0.75, 1.0)
    fg = rng.uniform(0.0, 0.3)
    if rng.random() < 0.5:  # light digit on dark
        bg, fg = 1 - bg, 1 - fg
    img = bg * (1 - a) + fg * a
    img += rng.normal(0, rng.uniform(0, 0.02), size=img.shape)
    img = np.clip(img, 0, 1)
    if rng.random() < 0.5:
        # 16-bit greyscale; sometimes only 12 bits used (as some scanners do)
        top = 65535 if rng.random() < 0.7 else 4095
        arr = np.round(img * top).astype(np.uint16)
        return _png(Image.fromarray(arr))  # uint16 -> mode I;16
    grey = Image.fromarray(np.round(img * 255).astype(np.uint8), "L")
    colors = int(rng.choice([16, 64, 256]))
    if rng.random() < 0.5:  # a colour palette (tinted) rather than a grey one
        tint = rng.uniform(0.7, 1.0, size=3)
        rgb = np.clip(np.asarray(grey, np.float32)[:, :, None] * tint, 0, 255).astype(np.uint8)
        src = Image.fromarray(rgb, "RGB")
    else:
        src = grey.convert("RGB")
    pal = src.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return _png(pal)


_FONT_CACHE: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    key = (name, size)
    if key not in _FONT_CACHE:
        path = os.path.join(FONT_DIR, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} is missing: the typed set needs the DejaVu fonts "
                "(Debian packages fonts-dejavu-core and fonts-dejavu-extra)"
            )
        _FONT_CACHE[key] = ImageFont.truetype(path, size)
    return _FONT_CACHE[key]


def _typed(digit: int, rng: np.random.Generator) -> bytes:
    name = FONTS[int(rng.integers(len(FONTS)))]
    fsize = int(rng.integers(28, 161))
    font = _font(name, fsize)
    text = str(digit)
    # Pillow types the box as floats (for fractional strokes); without a stroke it is ints.
    left, top, right, bottom = cast(tuple[int, int, int, int], font.getbbox(text))
    pad = fsize // 2
    glyph = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(glyph).text((pad - left, pad - top), text, fill=255, font=font)
    glyph = glyph.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BICUBIC)
    g = np.asarray(glyph, np.float32) / 255.0
    rows = np.flatnonzero(g.max(1) > 0.02)
    cols = np.flatnonzero(g.max(0) > 0.02)
    g = g[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    H = int(max(g.shape[0] + 8, rng.integers(g.shape[0] + 8, 2 * g.shape[0] + 60)))
    W = int(max(g.shape[1] + 8, rng.integers(g.shape[1] + 8, 2 * g.shape[0] + 60)))
    a = _place((H, W), g, rng)
    bg = rng.uniform(0.8, 1.0)
    fg = rng.uniform(0.0, 0.25)
    if rng.random() < 0.35:  # light on dark
        bg, fg = 1 - bg, 1 - fg
    img = bg * (1 - a) + fg * a + rng.normal(0, rng.uniform(0, 0.015), size=a.shape)
    arr = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return _png(Image.fromarray(arr, "L"))


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def make_sets(
    test_images: np.ndarray, test_labels: np.ndarray, n: int = 200, seed: int = 0
) -> dict[str, list[tuple[bytes, int]]]:
    """Build the four real-world sets (n images each) from MNIST test digits."""
    full = make_sets_indexed(test_images, test_labels, n=n, seed=seed)
    return {k: [(b, lab) for b, lab, _ in v] for k, v in full.items()}


def make_sets_indexed(
    test_images: np.ndarray, test_labels: np.ndarray, n: int = 200, seed: int = 0
) -> dict[str, list[tuple[bytes, int, int]]]:
    """Like make_sets, with the source MNIST index (-1 for typed) as a third item."""
    test_images = np.asarray(test_images)
    test_labels = np.asarray(test_labels)
    if test_images.ndim != 3 or test_images.shape[1:] != (28, 28):
        raise ValueError("test_images must be (N, 28, 28)")
    if len(test_images) != len(test_labels):
        raise ValueError("images and labels differ in length")
    out: dict[str, list[tuple[bytes, int, int]]] = {}
    for k, name in enumerate(SET_NAMES):
        rng = np.random.default_rng([seed, k])  # each set has its own stream
        items: list[tuple[bytes, int, int]] = []
        if name == "typed":
            for i in range(n):
                digit = i % 10
                items.append((_typed(digit, rng), digit, -1))
        else:
            idx = rng.choice(len(test_images), size=n, replace=n > len(test_images))
            make = {"photo": _photo, "canvas": _canvas, "large": _large}[name]
            for i in idx:
                items.append((make(test_images[i], rng), int(test_labels[i]), int(i)))
        out[name] = items
    return out


def _ext(data: bytes) -> str:
    return "jpg" if data[:3] == b"\xff\xd8\xff" else "png"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = get_settings()
    test = load_split("test", settings.mnist_data_dir, settings.mnist_cache_dir)
    sets = make_sets(test.images, test.labels, n=args.n, seed=args.seed)
    for name, items in sets.items():
        folder = os.path.join(args.outdir, name)
        os.makedirs(folder, exist_ok=True)
        for i, (data, label) in enumerate(items):
            with open(os.path.join(folder, f"{i:04d}_{label}.{_ext(data)}"), "wb") as handle:
                handle.write(data)
        print(f"{name}: {len(items)} files in {folder}")


if __name__ == "__main__":
    main()
