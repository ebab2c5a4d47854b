"""The OpenAPI description promises exactly the bodies the API sends.

``tests/integration/test_schemathesis.py`` fuzzes a live stack against it; this checks the
description itself, in process.
"""

from __future__ import annotations

import json

from fastapi.testclient import TestClient


def test_every_documented_error_body_is_ours(client: TestClient) -> None:
    described = client.get("/openapi.json").json()
    # FastAPI's own 422 body (a list of error objects) is never sent, so never promised.
    assert "HTTPValidationError" not in json.dumps(described)
    assert {"ErrorResponse", "TimeoutResponse"} <= set(described["components"]["schemas"])
    for path, methods in described["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                ref = response["content"]["application/json"]["schema"]["$ref"]
                expected = "TimeoutResponse" if status == "504" else "ErrorResponse"
                assert ref.endswith("/" + expected), (method, path, status)


def test_the_validation_422_is_documented_and_sent_alike(client: TestClient) -> None:
    described = client.get("/openapi.json").json()
    documented = described["paths"]["/jobs/{job_id}"]["get"]["responses"]["422"]
    assert documented["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    invalid = client.get("/jobs/" + "x" * 65)
    assert invalid.status_code == 422
    assert set(invalid.json()) == {"detail"}
    assert "job_id" in invalid.json()["detail"]


def test_statuses_per_operation_are_exact(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    single = {"200", "202", "400", "413", "415", "422", "500", "503", "504"}
    assert statuses("/predict/mnist", "post") == single
    # Image errors of a batch are answered per file inside its 200.
    assert statuses("/predict/mnist/batch", "post") == {"200", "400", "413", "422", "503"}
    assert statuses("/jobs/{job_id}", "get") == {"200", "404", "422", "503"}
    assert statuses("/health", "get") == {"200"}
    assert statuses("/ready", "get") == {"200", "503"}
    assert statuses("/model", "get") == {"200", "503"}
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert "/" not in paths  # the web page is not part of the API
