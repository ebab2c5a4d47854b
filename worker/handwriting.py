"""Handwriting that MNIST under-represents, as uploads, for measuring the model.

Evaluation tooling of the worker side, like ``worker/realworld.py``: ``python -m
worker.evaluate`` reports the model's accuracy on these sets and the tests use them. No
MNIST digit goes into any of them, and training never sees them (training's optdigits
scans are by other writers than ``uci``'s; ``tests/shared/test_optdigits.py`` checks that
no scan is in both).

``make_sets(part, n)`` builds ``{"styles": [...], "lowres": [...], "fonts": [...], "uci":
[...]}``, each a list of ``(encoded image file bytes, label)``; ``make_samples`` gives the
same images as ``Sample``s, which also name their source (``"pen"``, a font's file name
without its extension, or ``"uci"``), so that errors can be traced to it. There are two
parts that share no image: ``"dev"``, which the project tunes on, and ``"test"``, reported
beside it.

- styles: pen strokes drawn here, digit by digit, in the styles MNIST has few of: 9s whose
          tail curves back to the left, 4s with an open top, 7s with a bar, 1s with a flag
          and a base, flat-topped 3s, looped 2s; each stroke wobbles, the writing slants
          either way, and the pen runs from a thin pen to a thick marker.
- lowres: the same kind of digits (and the fonts') rendered at 8x8 to 16x16 pixels, then
          upscaled as a scanner or a thumbnail would, sometimes blurred, often JPEG'd.
- fonts:  digits in handwriting-style fonts (Debian's ``fonts-*`` packages listed in
          ``HANDWRITING_FONTS``), slightly rotated, either polarity.
- uci:    scans bundled with scikit-learn (``sklearn.datasets.load_digits``: 8x8, 17 grey
          levels, UCI optdigits' test part, by 13 people who are neither MNIST's writers nor
          the 30 of the training part ``shared.model`` adds), upscaled 3x to 16x with a random
          filter, half of them JPEG'd: the even-numbered 899 in "dev", the odd-numbered 898
          in "test" (``n`` does not apply). Only the worker has scikit-learn, which is why
          this module lives here.

The generated sets draw from seed 0 for "dev" and seed 1 for "test"; a part gives the same
bytes every time. CLI: ``python -m worker.handwriting OUTDIR [--part P] [--n N]``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from shared import typefaces

SET_NAMES = ("styles", "lowres", "fonts", "uci")
# Handwriting-style fonts from Debian packages (fonts-comic-neue, fonts-dkg-handwriting,
# fonts-breip, fonts-bwht, fonts-dancingscript, fonts-ecolier-court, fonts-femkeklaver,
# fonts-humor-sans, fonts-kaushanscript, fonts-kristi, fonts-klee).
HANDWRITING_FONTS = (
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Bold.otf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Italic.otf",
    "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",
    "/usr/share/fonts/truetype/fifthhorseman/dkgBd.ttf",
    "/usr/share/fonts/truetype/fifthhorseman/dkgIt.ttf",
    "/usr/share/fonts/truetype/breip/Breip.ttf",
    "/usr/share/fonts/opentype/bwht/BecauseWeBuild-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeConnect-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeCreate-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeLearn-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeMentor-Regular.otf",
    "/usr/share/fonts/opentype/bwht/BecauseWeOrganize-Regular.otf",
    "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
    "/usr/share/fonts/opentype/dancingscript/DancingScript-Bold.otf",
    "/usr/share/fonts/truetype/ecolier-court/Ecolier-court.ttf",
    "/usr/share/fonts/truetype/femkeklaver/femkeklaver.ttf",
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf",
    "/usr/share/fonts/truetype/kristi/Kristi.ttf",
    "/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf",
    "/usr/share/fonts/truetype/klee/KleeOne-SemiBold.ttf",
)
FONT_PACKAGES = (
    "fonts-comic-neue fonts-dkg-handwriting fonts-breip fonts-bwht fonts-dancingscript "
    "fonts-ecolier-court fonts-femkeklaver fonts-humor-sans fonts-kaushanscript "
    "fonts-kristi fonts-klee"
)

Point = tuple[float, float]
Stroke = list[Point]
PEN = "pen"  # the source of digits drawn as pen strokes here
UCI = "uci"


class Sample(NamedTuple):
    data: bytes  # an encoded image file
    label: int
    source: str  # PEN, UCI or a font's file name without its extension


def font_name(path: str) -> str:
    return Path(path).stem


# --------------------------------------------------------------------------------------
# digits as pen strokes, in a unit box (x to the right, y down)
# --------------------------------------------------------------------------------------


def _arc(centre: Point, radii: Point, start: float, end: float) -> Stroke:
    """Points along an ellipse from ``start`` to ``end`` degrees (0 right, 90 down)."""
    (cx, cy), (rx, ry) = centre, radii
    steps = max(8, int(abs(end - start) / 10))
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, steps)
    ]


# Each digit has several styles; each style is a list of strokes.
STYLES: dict[int, list[list[Stroke]]] = {
    0: [
        [_arc((0.5, 0.5), (0.45, 0.48), -90, 270)],
        [_arc((0.5, 0.5), (0.42, 0.48), -60, 320)],
    ],
    1: [
        [[(0.55, 0.0), (0.5, 1.0)]],
        [[(0.2, 0.25), (0.55, 0.0), (0.5, 1.0)]],  # a flag
        [[(0.2, 0.25), (0.55, 0.0), (0.5, 1.0)], [(0.15, 1.0), (0.85, 1.0)]],  # flag and base
    ],
    2: [
        [[*_arc((0.5, 0.3), (0.42, 0.3), 190, 360), (0.05, 0.98), (0.95, 0.98)]],
        [  # a loop where the diagonal meets the base
            [
                *_arc((0.5, 0.3), (0.42, 0.3), 190, 370),
                (0.15, 0.9),
                (0.3, 0.82),
                (0.32, 0.95),
                (0.15, 1.0),
                (0.4, 0.97),
                (0.95, 0.97),
            ]
        ],
    ],
    3: [
        [_arc((0.5, 0.26), (0.4, 0.25), 200, 450), _arc((0.5, 0.74), (0.45, 0.26), 270, 510)],
        [
            [(0.1, 0.0), (0.9, 0.0), (0.45, 0.4), *_arc((0.5, 0.7), (0.45, 0.3), 250, 510)]
        ],  # flat top
    ],
    4: [
        [[(0.7, 0.0), (0.05, 0.65), (0.95, 0.65)], [(0.7, 0.0), (0.7, 1.0)]],
        [[(0.15, 0.0), (0.1, 0.6), (0.95, 0.6)], [(0.72, 0.05), (0.72, 1.0)]],  # open top
        [  # open top, written in curves
            [(0.22, 0.0), (0.1, 0.3), (0.08, 0.5), (0.2, 0.62), (0.95, 0.58)],
            [(0.78, 0.08), (0.72, 0.6), (0.7, 1.0)],
        ],
    ],
    5: [
        [
            [(0.2, 0.0), (0.15, 0.45), *_arc((0.48, 0.68), (0.42, 0.3), 215, 500)],
            [(0.2, 0.0), (0.9, 0.0)],
        ],
        [[(0.9, 0.0), (0.2, 0.02), (0.15, 0.45), *_arc((0.48, 0.68), (0.42, 0.3), 215, 500)]],
    ],
    6: [
        [[(0.75, 0.0), (0.4, 0.2), (0.15, 0.6), *_arc((0.5, 0.7), (0.36, 0.28), 180, 540)]],
        [_arc((0.8, 0.6), (0.65, 0.6), 240, 180) + _arc((0.5, 0.72), (0.35, 0.26), 180, 530)],
    ],
    7: [
        [[(0.05, 0.05), (0.95, 0.05), (0.4, 1.0)]],
        [[(0.05, 0.05), (0.95, 0.05), (0.4, 1.0)], [(0.42, 0.52), (0.92, 0.5)]],  # a bar
        [[(0.05, 0.1), (0.95, 0.05), (0.62, 0.5), (0.5, 1.0)]],
    ],
    8: [
        [_arc((0.5, 0.26), (0.33, 0.24), 0, 360), _arc((0.5, 0.74), (0.42, 0.26), 0, 360)],
        [
            _arc((0.5, 0.27), (0.34, 0.25), 330, 150)
            + _arc((0.5, 0.75), (0.4, 0.25), 300, 600)
            + [(0.8, 0.15)]
        ],
    ],
    9: [
        [_arc((0.45, 0.3), (0.38, 0.28), 0, 360), [(0.83, 0.28), (0.8, 1.0)]],
        [  # the tail curves back to the left
            _arc((0.45, 0.3), (0.38, 0.28), 0, 360),
            [(0.83, 0.3), (0.84, 0.62), (0.72, 0.9), (0.45, 1.0), (0.2, 0.9)],
        ],
        [_arc((0.45, 0.3), (0.38, 0.28), 0, 360), [(0.83, 0.3), (0.5, 1.0)]],
        [  # one stroke, a loop that opens at the top
            [*_arc((0.45, 0.3), (0.38, 0.28), -30, 330), (0.8, 0.55), (0.65, 0.85), (0.3, 1.0)]
        ],
    ],
}


def _smooth(points: Stroke, rounds: int = 2) -> Stroke:
    """Chaikin corner cutting: strokes written fast have no sharp corners."""
    pts = np.asarray(points, np.float64)
    for _ in range(rounds):
        if len(pts) < 3:
            break
        q = 0.75 * pts[:-1] + 0.25 * pts[1:]
        r = 0.25 * pts[:-1] + 0.75 * pts[1:]
        pts = np.vstack([pts[:1], np.column_stack([q, r]).reshape(-1, 2), pts[-1:]])
    return [(float(x), float(y)) for x, y in pts]


def _densify(points: Stroke, step: float = 0.02) -> np.ndarray:
    out = [np.asarray(points[0])]
    for a, b in itertools.pairwise(points):
        pieces = max(1, int(math.dist(a, b) / step))
        for t in np.linspace(0, 1, pieces + 1)[1:]:
            out.append((1 - t) * np.asarray(a) + t * np.asarray(b))
    return np.asarray(out)


def _wobble(rng: np.random.Generator, amount: float) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth random displacement of the unit box: a hand is never steady."""
    waves = [
        (rng.uniform(1.0, 3.0, 2), rng.uniform(0, 2 * math.pi, 2), rng.normal(0, amount, 2))
        for _ in range(3)
    ]

    def move(p: np.ndarray) -> np.ndarray:
        out = p.copy()
        for freq, phase, size in waves:
            out[:, 0] += size[0] * np.sin(freq[0] * math.pi * p[:, 1] + phase[0])
            out[:, 1] += size[1] * np.sin(freq[1] * math.pi * p[:, 0] + phase[1])
        return out

    return move


def draw_digit(digit: int, rng: np.random.Generator, height: int) -> np.ndarray:
    """One handwritten-looking digit as float32 ink coverage in [0, 1], ``height`` rows."""
    style = STYLES[digit][int(rng.integers(len(STYLES[digit])))]
    width_ratio = float(rng.uniform(0.5, 0.8)) if digit != 1 else float(rng.uniform(0.3, 0.6))
    slant = float(rng.uniform(-0.35, 0.3))  # x shift per unit of height (negative: leans right)
    angle = math.radians(float(rng.uniform(-6, 6)))
    pen = float(
        rng.choice([rng.uniform(0.025, 0.05), rng.uniform(0.05, 0.1), rng.uniform(0.1, 0.16)])
    )
    move = _wobble(rng, 0.02)
    over = 4  # draw larger, then shrink: anti-aliased edges
    scale = height * over * 0.8
    margin = height * over * 0.25
    strokes = []
    for stroke in style:
        pts = _densify(_smooth(stroke) if rng.random() < 0.7 else stroke)
        pts = move(pts + rng.normal(0, 0.01, 2))
        x = (pts[:, 0] - 0.5) * width_ratio + slant * (0.5 - pts[:, 1])
        y = pts[:, 1] - 0.5
        xr = x * math.cos(angle) - y * math.sin(angle)
        yr = x * math.sin(angle) + y * math.cos(angle)
        strokes.append(np.column_stack([xr * scale, yr * scale]))
    every = np.vstack(strokes)
    lo = every.min(0) - margin
    size = every.max(0) + margin - lo
    canvas = Image.new("L", (int(size[0]) + 1, int(size[1]) + 1), 0)
    pen_px = max(1.0, pen * scale)
    draw = ImageDraw.Draw(canvas)
    for s in strokes:
        xy = [(float(px - lo[0]), float(py - lo[1])) for px, py in s]
        draw.line(xy, fill=255, width=int(round(pen_px)), joint="curve")
        radius = pen_px / 2
        for px, py in (xy[0], xy[-1]):  # round pen tips
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=255)
    small = canvas.resize(
        (max(1, canvas.width // over), max(1, canvas.height // over)), Image.Resampling.BOX
    )
    return np.asarray(small, np.float32) / 255.0


# --------------------------------------------------------------------------------------
# from ink coverage to an uploaded file
# --------------------------------------------------------------------------------------


def _on_paper(ink: np.ndarray, rng: np.random.Generator, pad: int) -> np.ndarray:
    """Ink coverage to a greyscale image in [0, 1]: paper and ink shades, either polarity."""
    a = np.pad(ink, pad)
    paper, tone = float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.0, 0.3))
    if rng.random() < 0.3:
        paper, tone = 1 - paper, 1 - tone
    img = paper * (1 - a) + tone * a + rng.normal(0, float(rng.uniform(0, 0.02)), a.shape)
    return np.clip(img, 0, 1)


def _encode(img: np.ndarray, rng: np.random.Generator, jpeg_share: float) -> bytes:
    pil = Image.fromarray(np.round(img * 255).astype(np.uint8), "L")
    buffer = io.BytesIO()
    if rng.random() < jpeg_share:
        pil.save(buffer, "JPEG", quality=int(rng.integers(50, 91)))
    else:
        pil.save(buffer, "PNG")
    return buffer.getvalue()


def _upscaled(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A low-resolution image enlarged 3x to 16x by one of the usual filters, maybe blurred."""
    factor = float(rng.uniform(3, 16))
    size = (max(1, round(img.shape[1] * factor)), max(1, round(img.shape[0] * factor)))
    method = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)[
        int(rng.integers(3))
    ]
    big = np.asarray(Image.fromarray(img.astype(np.float32), "F").resize(size, method))
    if rng.random() < 0.5:
        big = ndimage.gaussian_filter(big, float(rng.uniform(0.2, 0.8)) * factor)
    clipped: np.ndarray = np.clip(big, 0, 1)
    return clipped


def _glyph(digit: int, font_path: str, rng: np.random.Generator) -> np.ndarray:
    if not os.path.isfile(font_path):
        raise FileNotFoundError(
            f"{font_path} is missing: the handwriting sets need Debian's {FONT_PACKAGES}"
        )
    size = int(rng.integers(40, 121))
    return typefaces.glyph(str(digit), font_path, size, float(rng.uniform(-8, 8)))


def _shrink(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage of a digit scanned onto a grid of 8 to 16 pixels (its longer side)."""
    side = int(rng.integers(8, 17))
    scale = side / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    small = np.asarray(Image.fromarray(ink, "F").resize(size, Image.Resampling.BOX), np.float32)
    return np.pad(small, 1)


def _styles(n: int, rng: np.random.Generator) -> Iterator[Sample]:
    for i in range(n):
        digit = i % 10
        ink = draw_digit(digit, rng, int(rng.integers(40, 161)))
        yield Sample(_encode(_on_paper(ink, rng, int(rng.integers(4, 40))), rng, 0.2), digit, PEN)


def _lowres(n: int, rng: np.random.Generator) -> Iterator[Sample]:
    for i in range(n):
        digit = i % 10
        if rng.random() < 0.5:
            ink, source = draw_digit(digit, rng, 64), PEN
        else:
            font = HANDWRITING_FONTS[int(rng.integers(len(HANDWRITING_FONTS)))]
            ink, source = _glyph(digit, font, rng), font_name(font)
        small = _on_paper(_shrink(ink, rng), rng, 0)
        yield Sample(_encode(_upscaled(small, rng), rng, 0.5), digit, source)


def _fonts(n: int, rng: np.random.Generator) -> Iterator[Sample]:
    for i in range(n):
        digit = i % 10
        font = HANDWRITING_FONTS[(i // 10) % len(HANDWRITING_FONTS)]
        ink = _glyph(digit, font, rng)
        yield Sample(
            _encode(_on_paper(ink, rng, int(rng.integers(4, 40))), rng, 0.0), digit, font_name(font)
        )


def _uci(rng: np.random.Generator, first: int) -> Iterator[Sample]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    digits = load_digits()
    for image, label in zip(digits.images[first::2], digits.target[first::2], strict=True):
        ink = np.asarray(image, np.float32) / 16.0
        img = _on_paper(ink, rng, 0)
        yield Sample(_encode(_upscaled(img, rng), rng, 0.5), int(label), UCI)


PARTS = {"dev": 0, "test": 1}


def make_samples(part: str = "test", n: int = 500) -> dict[str, list[Sample]]:
    """The four sets of ``part`` ("dev" or "test"); ``n`` images in each generated one,
    labels cycling 0-9."""
    seed = PARTS[part]
    makers: dict[str, Callable[[np.random.Generator], Iterator[Sample]]] = {
        "styles": lambda rng: _styles(n, rng),
        "lowres": lambda rng: _lowres(n, rng),
        "fonts": lambda rng: _fonts(n, rng),
        "uci": lambda rng: _uci(rng, seed),
    }
    return {
        name: list(makers[name](np.random.default_rng([seed, k])))
        for k, name in enumerate(SET_NAMES)
    }


def as_pairs(samples: list[Sample]) -> list[tuple[bytes, int]]:
    """The samples without their sources: (encoded image file bytes, label) pairs."""
    return [(sample.data, sample.label) for sample in samples]


def make_sets(part: str = "test", n: int = 500) -> dict[str, list[tuple[bytes, int]]]:
    """``make_samples`` without the sources."""
    return {name: as_pairs(samples) for name, samples in make_samples(part, n).items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--part", choices=sorted(PARTS), default="test")
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args(argv)
    for name, items in make_sets(args.part, args.n).items():
        folder = args.outdir / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (data, label) in enumerate(items):
            ext = "jpg" if data[:3] == b"\xff\xd8\xff" else "png"
            (folder / f"{i:04d}_{label}.{ext}").write_bytes(data)
        print(f"{name}: {len(items)} files in {folder}")


if __name__ == "__main__":
    main()
