"""Schemathesis fuzzes every operation of ``/openapi.json`` against a live stack.

It runs the CLI (its most stable interface) on every phase with at most 50 examples per
operation, and fails on any 5xx, any status the description does not list, and any body
or content type that does not match it. The run's seed is in the output: to replay a
failure, run the printed command with ``--seed``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
MAX_EXAMPLES = 50
TIME_LIMIT_SECONDS = 120  # a hung run fails instead of stalling the suite


def schemathesis_cli() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("schemathesis is not installed (the dev extra: make test installs it)")
    return found


def test_the_api_honours_its_openapi_description(stack: Stack, tmp_path: Path) -> None:
    queue = f"fuzz-{uuid.uuid4().hex[:8]}"
    stack.worker("fuzz", QUEUE_NAME=queue)
    _, base = stack.api(QUEUE_NAME=queue, SYNC_TIMEOUT_SECONDS="10")
    report = tmp_path / "schemathesis.json"
    run = subprocess.run(
        [
            schemathesis_cli(),
            "run",
            f"{base}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--workers",
            "1",  # the machine is shared: one request at a time is enough
            "--request-timeout",
            "30",
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        cwd=tmp_path,  # its Hypothesis database and reports stay out of the repository
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_SECONDS,
        check=False,
    )
    output = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, output
    summary = json.loads(report.read_text())
    assert summary["complete"], output
    assert summary["failures"] == [] and summary["errors"] == [], output
    described = httpx.get(f"{base}/openapi.json", timeout=5).json()
    operations = sum(len(methods) for methods in described["paths"].values())
    assert summary["operations"]["tested"] == operations == 7, summary["operations"]
    assert summary["test_cases"]["generated"] >= 100, summary["test_cases"]
