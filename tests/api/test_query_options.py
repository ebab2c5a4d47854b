"""Query options: each endpoint honours the ones it documents and refuses any other."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.images import png


def test_an_unknown_query_option_is_a_422_naming_what_the_endpoint_takes(
    client: TestClient, digits: list[np.ndarray]
) -> None:
    files = [("file", ("a.png", png(digits[1]))), ("file", ("b.png", png(digits[2])))]
    batch = client.post("/predict/mnist/batch", params={"async": "true"}, files=files)
    assert batch.status_code == 422
    assert batch.json() == {
        "detail": "Unknown query option(s): async. This endpoint takes: include_input."
    }
    single = client.post(
        "/predict/mnist", params={"asynch": "true"}, files={"file": ("a.png", png(digits[1]))}
    )
    assert single.status_code == 422
    assert single.json()["detail"].startswith("Unknown query option(s): asynch.")
    assert client.get("/health", params={"verbose": "1"}).status_code == 422
    assert client.get("/", params={"utm_source": "mail"}).status_code == 200  # the page


def test_the_batch_endpoint_honours_include_input(
    client: TestClient, digits: list[np.ndarray]
) -> None:
    files = [("file", ("a.png", png(digits[1]))), ("file", ("b.png", png(digits[2])))]
    plain = client.post("/predict/mnist/batch", files=files).json()["results"]
    shown = client.post(
        "/predict/mnist/batch", params={"include_input": "true"}, files=files
    ).json()["results"]
    assert [item["result"].get("input_image") for item in plain] == [None, None]
    assert all(item["result"]["input_image"].startswith("data:image/png;base64,") for item in shown)
    assert [item["result"]["prediction"] for item in shown] == ["1", "2"]
