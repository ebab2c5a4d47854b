"""Every error a worker can report reaches the client with its own status and detail."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import api.errors  # noqa: F401 - defines the API's own error classes, if any register
from shared import errors, inference
from tests.images import png


def test_a_code_taken_twice_fails_when_the_class_is_created() -> None:
    with pytest.raises(TypeError, match=r"'not_an_image'.*already"):

        class Impostor(errors.ServiceError):
            code = "not_an_image"


@pytest.mark.parametrize("cls", list(errors.ERRORS_BY_CODE.values()), ids=lambda c: c.code)
def test_raised_on_the_worker_answered_with_its_status(
    cls: type[errors.ServiceError], client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(data: bytes, max_pixels: int) -> Image.Image:
        raise cls("Reported by the worker.")

    # the first thing the worker does with each upload, batched or traced
    monkeypatch.setattr(inference, "decode_image", fail)
    response = client.post(
        "/predict/mnist", files={"file": ("d.png", png(np.zeros((28, 28), np.uint8)))}
    )
    assert response.status_code == cls.status_code
    assert response.json()["detail"] == cls("Reported by the worker.").detail
