"""Digits printed in some two hundred typefaces, for training the general head.

MNIST's writers seldom made some shapes that others make: 9s whose tail curves back, 4s
with an open top, 7s with a bar, 1s with a flag and a base. Printed typefaces draw them
all, in every weight and slant. Rendered, bent by ``shared.augment`` and added to the
training data, with a fifth drawn as outlines, they took the ``lowres`` handwriting set's
dev part from 19 errors to 15 (README, the two-head and 24-render rounds), where training
more of the same MNIST digits or learned features did not.

The typefaces are every TrueType and OpenType file of the Debian packages in
``PACKAGES`` (none is a font of the evaluation sets in ``worker/handwriting.py``, a test
checks it) that draws ten distinct digits: symbol and dingbat fonts drop out. Each digit
of each typeface is rendered ``renders`` times at a random size (40 to 120 px) and
rotation (up to 8 degrees), a share of them as outlines, as dark ink on white paper, and
put through the normaliser like any upload. The same seed and fonts give the same images,
whatever the number of cores; ``checksum`` of the font files goes into the model's
metadata.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from PIL import Image, ImageDraw, ImageFont

from shared.augment import as_upload
from shared.errors import DatasetError

# Debian package -> the folder its font files are installed in.
PACKAGES: dict[str, str] = {
    "fonts-liberation": "/usr/share/fonts/truetype/liberation",
    "fonts-freefont-ttf": "/usr/share/fonts/truetype/freefont",
    "fonts-open-sans": "/usr/share/fonts/truetype/open-sans",
    "fonts-lato": "/usr/share/fonts/truetype/lato",
    "fonts-cantarell": "/usr/share/fonts/opentype/cantarell",
    "fonts-sil-andika": "/usr/share/fonts/truetype/andika",
    "fonts-comfortaa": "/usr/share/fonts/truetype/comfortaa",
    "fonts-dustin": "/usr/share/fonts/truetype/dustin",
    "fonts-urw-base35": "/usr/share/fonts/opentype/urw-base35",
    "fonts-texgyre": "/usr/share/texmf/fonts/opentype/public/tex-gyre",
    "fonts-fantasque-sans": "/usr/share/fonts",  # in two trees: opentype/ and truetype/
    "fonts-tlwg-purisa-ttf": "/usr/share/fonts/truetype/tlwg",
    "fonts-kiloji": "/usr/share/fonts/truetype/kiloji",
    "fonts-seto": "/usr/share/fonts/truetype/seto",
    "fonts-rufscript": "/usr/share/fonts/truetype/rufscript",
    "fonts-leckerli-one": "/usr/share/fonts/truetype/leckerli-one",
    "fonts-lobstertwo": "/usr/share/fonts/opentype/lobstertwo",
    "fonts-havana": "/usr/share/fonts/opentype/havana",
}
# Of a folder shared with other packages, only these file name prefixes are the package's.
_PREFIXES = {"fonts-fantasque-sans": "FantasqueSansMono", "fonts-tlwg-purisa-ttf": "Purisa"}
SUFFIXES = (".ttf", ".otf")
# Fonts whose 0-9 are distinct pictures, not digits (URW's dingbats: pencils, ticks, crosses).
SYMBOL_FONTS = frozenset({"D050000L.otf"})
# Per digit and typeface: about 48,000 digits from 200 typefaces. 30 read lowres' dev part one
# image better, but trained in 301 s on a 2-core machine, over the 5-minute bound; 24 in 277 s
# (README, the 24-render round).
RENDERS = 24
SIZES = (40, 121)  # font size in pixels, [low, high)
DEGREES = 8.0
CHECKSUM_KEY = "typefaces"  # in the model metadata's data_sha256
SEED_STREAM = 1000  # added to the training seed, so these digits are bent their own way
# The share drawn as outlines, as some hands and fonts draw strokes (femkeklaver, which the
# lowres set scans); never 1s, whose outline is a narrow ring that reads as a 0.
OUTLINED = 0.2
OUTLINE_DIVISOR = 25  # outline width: the font size over this, at least 2 px
_PROBE_SIZE = 64


def install_hint() -> str:
    return "apt-get install " + " ".join(PACKAGES)


def font_files() -> list[Path]:
    """Every font file of ``PACKAGES``, sorted; raises ``DatasetError`` if a package's
    folder has none (the package is not installed)."""
    found: set[Path] = set()
    for package, folder in PACKAGES.items():
        prefix = _PREFIXES.get(package, "")
        files = [
            path
            for path in Path(folder).rglob(f"{prefix}*")
            if path.suffix.lower() in SUFFIXES and path.is_file()
        ]
        if not files:
            raise DatasetError(
                f"No fonts of {package} in {folder}: training on typefaces needs "
                f"Debian's font packages ({install_hint()}), or TRAIN_TYPEFACE_RENDERS=0."
            )
        found.update(files)
    return sorted(found)


def glyph(
    text: str, font_path: Path | str, size: int, degrees: float, outline: int = 0
) -> np.ndarray:
    """``text`` drawn in the font at ``size`` px, rotated by ``degrees``, as ink in [0, 1]
    cropped to where it is (an empty (0, 0) array where there is none). ``outline`` > 0
    draws only the outline of each stroke, that many pixels wide."""
    font = ImageFont.truetype(str(font_path), size)
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    pad = size // 2
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text(
        (pad - left, pad - top),
        text,
        fill=0 if outline else 255,
        font=font,
        stroke_width=outline,
        stroke_fill=255,
    )
    canvas = canvas.rotate(degrees, resample=Image.Resampling.BICUBIC)
    ink = np.asarray(canvas, np.float32) / np.float32(255)
    rows, cols = np.flatnonzero(ink.max(1) > 0.02), np.flatnonzero(ink.max(0) > 0.02)
    if not len(rows):
        return np.zeros((0, 0), np.float32)
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _as_digit(ink: np.ndarray) -> np.ndarray | None:
    """Ink as an upload would be (``shared.augment.as_upload``), as (28, 28) uint8, white on
    black as MNIST's own digits are, or None where the normaliser finds no digit."""
    pixels = as_upload(ink) if ink.size else None
    if pixels is None:
        return None
    digit: np.ndarray = np.round(pixels.reshape(28, 28) * 255).astype(np.uint8)
    return digit


def draws_digits(font_path: Path) -> bool:
    """Whether the font draws each of 0-9, each unlike the others (a font without digits
    draws one placeholder box for all of them, or nothing)."""
    if font_path.name in SYMBOL_FONTS:
        return False
    try:
        shapes = [glyph(str(d), font_path, _PROBE_SIZE, 0.0) for d in range(10)]
    except OSError:  # a file FreeType cannot read
        return False
    if any(shape.size == 0 for shape in shapes):
        return False
    return len({(shape.shape, shape.tobytes()) for shape in shapes}) == 10


def usable_fonts() -> list[Path]:
    return [path for path in font_files() if draws_digits(path)]


def checksum(fonts: list[Path]) -> str:
    """sha256 over the fonts' names and contents, in order."""
    digest = hashlib.sha256()
    for path in fonts:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _render_font(font_path: Path, renders: int, seed: int, index: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    out = np.zeros((10 * renders, 28, 28), np.uint8)
    for row in range(10 * renders):
        size = int(rng.integers(*SIZES))
        degrees = float(rng.uniform(-DEGREES, DEGREES))
        outlined = rng.random() < OUTLINED and row % 10 != 1
        outline = max(2, round(size / OUTLINE_DIVISOR)) if outlined else 0
        digit = _as_digit(glyph(str(row % 10), font_path, size, degrees, outline))
        if digit is not None:
            out[row] = digit
    return out


def render(fonts: list[Path], renders: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``renders`` images of each digit in each font: (n, 28, 28) uint8, white digits on
    black, and their labels; a render the normaliser finds no digit in is left out."""
    if not fonts or renders <= 0:
        return np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64)
    parts = Parallel(n_jobs=min(os.cpu_count() or 1, len(fonts)))(
        delayed(_render_font)(path, renders, seed, index) for index, path in enumerate(fonts)
    )
    images = np.concatenate(parts)
    labels = np.tile(np.arange(10, dtype=np.int64), renders * len(fonts))
    kept = images.reshape(len(images), -1).max(1) > 0
    return images[kept], labels[kept]
