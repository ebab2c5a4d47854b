"""The interactive API docs work on a machine without internet: nothing is loaded from
another host."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

# src="..." and href="...", and the url: '...' Swagger UI and ReDoc are given the schema by.
_REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_name_no_other_host_and_every_asset_is_served(
    client: TestClient, page: str
) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "http://" not in response.text
    assert "https://" not in response.text
    assets = _REFERENCE.findall(response.text)
    # Swagger UI: script, CSS, favicon and schema; ReDoc: script, favicon and schema.
    assert len(assets) >= (4 if page == "/docs" else 3)
    assert "/openapi.json" in assets
    for asset in assets:
        assert asset.startswith("/"), asset  # on this server
        fetched = client.get(asset)
        assert fetched.status_code == 200, asset
        assert fetched.content, asset


def test_the_docs_assets_get_a_route_label_of_their_own(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/docs-assets/swagger-ui.css"):
        assert client.get(path).status_code == 200
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if sample.name == "mnist_http_requests_total"
    }
    assert {"/docs", "/redoc", "/docs-assets"} <= routes
    assert "unmatched" not in routes
