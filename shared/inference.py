"""From encoded image files to answers: decode, normalise, predict in one vectorised call.

One bad image fails only its own item, so a batch of uploads is answered in order.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from shared.errors import ServiceError
from shared.imaging import decode_image
from shared.model import Model
from shared.normalize import to_mnist


def prepare(data: bytes, max_pixels: int) -> np.ndarray:
    """One upload as a (784,) float32 MNIST-like vector; raises ``ServiceError``."""
    return to_mnist(decode_image(data, max_pixels)).reshape(-1)


def as_data_url(pixels: np.ndarray) -> str:
    """A (28, 28) float image in [0, 1] as a PNG data URL (what the model saw)."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(pixels.reshape(28, 28) * 255).astype(np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def predict_files(
    files: list[bytes], model: Model, max_pixels: int, return_inputs: frozenset[int] = frozenset()
) -> list[dict[str, Any]]:
    """``shared.schemas.TaskItem`` bodies for ``files``, in order; ``return_inputs``: the
    positions whose answer also carries the image the model saw."""
    items: list[dict[str, Any]] = [{"prediction": None, "error": None} for _ in files]
    vectors: list[np.ndarray] = []
    positions: list[int] = []
    for position, data in enumerate(files):
        try:
            vectors.append(prepare(data, max_pixels))
            positions.append(position)
        except ServiceError as exc:
            items[position]["error"] = exc.to_dict()
    if vectors:
        predictions = model.predict(np.stack(vectors))
        for position, vector, prediction in zip(positions, vectors, predictions, strict=True):
            if position in return_inputs:
                prediction["input_image"] = as_data_url(vector)
            items[position]["prediction"] = prediction
    return items
