"""``python -m scripts.make_examples``: draw the sample uploads in ``examples/``.

Each digit is a pen stroke along a path drawn here by hand (not taken from MNIST), so the
files are ours to ship; the same code always writes the same pixels. The README's examples
and ``tests/test_examples.py`` use them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIZE = 200  # the canvas, in pixels; a phone photo would be larger, MNIST is 28

Point = tuple[float, float]


def arc(centre: Point, radius: Point, start: float, stop: float, steps: int = 40) -> list[Point]:
    """Points along an elliptical arc, angles in degrees (0 = right, 90 = down)."""
    (cx, cy), (rx, ry) = centre, radius
    return [
        (
            cx + rx * math.cos(math.radians(start + (stop - start) * i / steps)),
            cy + ry * math.sin(math.radians(start + (stop - start) * i / steps)),
        )
        for i in range(steps + 1)
    ]


# One list of strokes per digit; each stroke is a path the pen follows without lifting.
SEVEN: list[list[Point]] = [[(52, 48), (148, 44), (118, 100), (92, 162)]]
TWO: list[list[Point]] = [
    [*arc((100, 78), (40, 36), 200, 370), (72, 150), (60, 160), (150, 158)],
]
FOUR: list[list[Point]] = [
    [(112, 38), (50, 122), (156, 120)],
    [(124, 66), (122, 166)],
]


def draw(strokes: Iterable[Sequence[Point]], ink: int, paper: int, width: int) -> Image.Image:
    """The strokes in one grey level on another, with round ends and joints."""
    image = Image.new("L", (SIZE, SIZE), paper)
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        pen.line(list(stroke), fill=ink, width=width, joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=ink)
    return image


def photo(strokes: Iterable[Sequence[Point]]) -> Image.Image:
    """Dark-blue ink on cream paper, lit unevenly, slightly blurred, with sensor noise."""
    mask = np.asarray(
        draw(strokes, ink=255, paper=0, width=11).filter(ImageFilter.GaussianBlur(1.5))
    )
    alpha = mask.astype(np.float64)[..., None] / 255
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    light = 1.0 - 0.18 * (x + y) / (2 * SIZE)  # darker towards the bottom right
    paper = np.array([238, 228, 200], dtype=np.float64) * light[..., None]
    ink = np.array([40, 45, 90], dtype=np.float64)
    pixels = paper * (1 - alpha) + ink * alpha
    pixels += np.random.default_rng(7).normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def main() -> int:
    EXAMPLES.mkdir(exist_ok=True)
    # MNIST's own look: a white digit on black.
    draw(SEVEN, ink=255, paper=0, width=16).save(EXAMPLES / "seven.png", optimize=True)
    # What most drawing programs export: dark on white.
    draw(TWO, ink=20, paper=255, width=14).save(EXAMPLES / "two.png", optimize=True)
    photo(FOUR).save(EXAMPLES / "four-photo.jpg", quality=85)
    (EXAMPLES / "notes.txt").write_text(
        "Shopping list: milk, bread, 7 apples.\nThis file is text, not an image.\n"
    )
    for path in sorted(EXAMPLES.iterdir()):
        print(f"{path.relative_to(EXAMPLES.parent)}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
