"""Small helpers to encode test images in memory."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **options: object) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(array: np.ndarray) -> bytes:
    return encode(array, "PNG")
