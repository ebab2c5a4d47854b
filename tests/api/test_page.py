"""The web page's files as the API serves them (the browser tests drive the page itself)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.routes.page import STATIC_DIR


def test_the_page_is_served_at_the_root(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for hook in ("pad", "prediction", "confidence", "clear", "error", "file", "async"):
        assert f'data-testid="{hook}"' in response.text
    assert 'aria-live="polite"' in response.text


def test_its_assets_are_served(client: TestClient) -> None:
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    style = client.get("/static/style.css")
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    assert client.get("/static/missing.js").status_code == 404


def test_the_page_is_not_part_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)


def test_the_page_refers_only_to_its_own_server_by_relative_urls() -> None:
    # Relative URLs keep the page working under any mount point; no other host is named.
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC_DIR / name).read_text()
        assert not re.search(r"""https?://|['"(]\s*//""", text, re.IGNORECASE), name
        assert not re.search(r"""(?:src|href)="/""", text), name
        assert not re.search(r"""fetch\(\s*[`'"]/""", text), name
