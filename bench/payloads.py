"""What the load generator sends: multipart bodies of real MNIST test digits.

- ``digit_pngs``: 28x28 PNGs as MNIST has them (white on black), one per test image.
- ``photo_jpegs``: 400x400 photo-like JPEGs: a dark digit, upscaled, off-centre, on tinted,
  unevenly lit, noisy paper. Decoding and normalising these is real work for a worker.
- ``multipart``: one request body with any number of ``file`` parts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from shared.mnist import load_split
from shared.settings import get_settings

BOUNDARY = "benchBoundary7d1c9a"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass(frozen=True)
class Digit:
    data: bytes
    label: int
    mime: str
    filename: str


def test_digits(count: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    settings = get_settings()
    split = load_split(
        "test", settings.mnist_data_dir, settings.mnist_cache_dir, limit=offset + count
    )
    return split.images[offset:], split.labels[offset:]


def digit_pngs(count: int, offset: int = 0) -> list[Digit]:
    images, labels = test_digits(count, offset)
    out = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        out.append(Digit(buffer.getvalue(), int(label), "image/png", f"d{index}.png"))
    return out


def _photo(image28: np.ndarray, rng: np.random.Generator, size: int = 400) -> bytes:
    height = int(rng.integers(150, 230))
    ink = Image.fromarray(image28).resize((height, height), Image.Resampling.BICUBIC)
    coverage = np.asarray(ink, dtype=np.float32) / 255.0
    # Paper: a tint, a lighting gradient across the frame, and sensor noise.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    light = 0.85 + 0.15 * (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)
    tint = rng.uniform(0.85, 1.0, size=3).astype(np.float32)
    paper = light[..., None] * tint * 235.0
    top, left = (int(v) for v in rng.integers(20, size - height - 20, size=2))
    alpha = np.zeros((size, size), dtype=np.float32)
    alpha[top : top + height, left : left + height] = coverage
    ink_colour = rng.uniform(10, 60, size=3).astype(np.float32)
    pixels = paper * (1 - alpha[..., None]) + ink_colour * alpha[..., None]
    pixels += rng.normal(0, 6, size=pixels.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    photo = photo.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.2))))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=int(rng.integers(70, 90)))
    return buffer.getvalue()


def photo_jpegs(count: int, offset: int = 0, seed: int = 0) -> list[Digit]:
    images, labels = test_digits(count, offset)
    rng = np.random.default_rng(seed)
    return [
        Digit(_photo(image, rng), int(label), "image/jpeg", f"p{index}.jpg")
        for index, (image, label) in enumerate(zip(images, labels, strict=True))
    ]


def multipart(files: list[Digit], field_name: str = "file") -> bytes:
    parts = []
    for digit in files:
        head = (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{field_name}"; filename="{digit.filename}"\r\n'
            f"Content-Type: {digit.mime}\r\n\r\n"
        )
        parts.append(head.encode() + digit.data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
