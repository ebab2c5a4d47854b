"""Security properties of the API in process: unguessable ids, CORS, request ids."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.settings import Settings
from tests.images import png

ORIGIN = "https://example.org"


def test_job_ids_are_distinct_uuid4s(client: TestClient, digits: list[np.ndarray]) -> None:
    ids = []
    for digit in digits:
        response = client.post(
            "/predict/mnist", params={"async": "true"}, files={"file": ("d.png", png(digit))}
        )
        ids.append(response.json()["job_id"])
    synced = client.post("/predict/mnist", files={"file": ("d.png", png(digits[0]))})
    ids.append(synced.json()["job_id"])
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert parsed.version == 4
        assert str(parsed) == job_id  # canonical form: nothing else is accepted as an id
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "given",
    ['a"}{"level":"critical', "x" * 129, "id with spaces", "\u00fcn\u00efcode", "a/../b"],
)
def test_unsafe_request_ids_are_replaced(client: TestClient, given: str) -> None:
    # A client's id goes into every log line of its request: only plain ones are kept.
    response = client.get("/health", headers={"X-Request-ID": given.encode()})
    echoed = response.headers["x-request-id"]
    assert echoed != given
    assert len(echoed) == 32 and all(c in "0123456789abcdef" for c in echoed)


def app_client(settings: Settings) -> TestClient:
    # No lifespan (no `with`): CORS is answered by middleware, before any route or Redis.
    return TestClient(create_app(settings))


def test_cors_is_off_unless_configured() -> None:
    client = app_client(Settings())
    preflight = client.options(
        "/predict/mnist",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.get("/health", headers={"Origin": ORIGIN})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


def test_cors_allows_only_the_configured_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", f'["{ORIGIN}"]')
    settings = Settings()
    assert settings.cors_origins == [ORIGIN]
    client = app_client(settings)
    preflight = client.options(
        "/predict/mnist",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert (
        client.get("/health", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"]
        == ORIGIN
    )
    other = "https://evil.example"
    refused = client.options(
        "/predict/mnist", headers={"Origin": other, "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert (
        "access-control-allow-origin"
        not in client.get("/health", headers={"Origin": other}).headers
    )
