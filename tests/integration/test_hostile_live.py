"""The hostile-upload corpus against real processes: uvicorn, a Celery worker, Redis.

Same answers as in process, never a 5xx, and the service still predicts afterwards. The
20 MB uploads are also sent with a truthful, an absent (chunked) and a lying small
``Content-Length``, while the API process's resident memory is watched.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from shared.schemas import PredictionResponse
from tests.conftest import REPO
from tests.hostile import (
    BOUNDARY,
    BY_NAME,
    CASE_NAMES,
    PREDICT,
    TWENTY_MB,
    Digit,
    Part,
    multipart,
    plain_png,
)
from tests.integration.conftest import Proc, Stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CORPUS_DIGIT = 7
MAX_RSS_GROWTH_BYTES = 30 * 1024 * 1024


def rss_bytes(process: Proc) -> int:
    assert process.popen is not None
    for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


@pytest.fixture(scope="module")
def live(stack: Stack) -> tuple[Proc, Proc, str]:
    queue = f"hostile-{uuid.uuid4().hex[:8]}"
    worker = stack.worker("hostile", QUEUE_NAME=queue)
    api, base = stack.api(QUEUE_NAME=queue, SYNC_TIMEOUT_SECONDS="20")
    return api, worker, base


@pytest.fixture(scope="module")
def http(live: tuple[Proc, Proc, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live[2], timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def corpus_digit(digits: list[np.ndarray]) -> Digit:
    return Digit(digits[CORPUS_DIGIT], CORPUS_DIGIT)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_case_live(name: str, http: httpx.Client, corpus_digit: Digit) -> None:
    case = BY_NAME[name]
    response = http.request(**case.build(corpus_digit).as_kwargs())
    body = response.json()
    assert response.status_code < 500, body
    assert case.check(response.status_code, body, corpus_digit) == [], body
    assert "Traceback" not in response.text
    if response.status_code == 200:
        PredictionResponse.model_validate(body)
    else:
        assert set(body) == {"detail"}


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    head = multipart(Part(b""))[: -len(f"\r\n--{BOUNDARY}--\r\n")]
    yield head + b"\x89PNG\r\n\x1a\n"
    sent = 0
    while sent < total:
        yield bytes(size)
        sent += size


def _lying_upload(base: str, declared: int) -> bytes:
    """A 20 MB multipart body sent after a ``Content-Length`` of ``declared``."""
    where = urlsplit(base)
    body = b"".join(_chunks(TWENTY_MB))
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: {where.netloc}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        # The server may hang up before taking everything: that is the point.
        with contextlib.suppress(OSError):
            sock.sendall(head + body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


def test_twenty_mb_uploads_keep_the_api_flat(
    live: tuple[Proc, Proc, str], http: httpx.Client
) -> None:
    api, _, base = live
    data = b"\x89PNG\r\n\x1a\n" + bytes(TWENTY_MB)
    http.post(PREDICT, files={"file": ("warm.png", data[:1000])})  # warm the code paths
    before = rss_bytes(api)
    for _ in range(3):
        response = http.post(PREDICT, files={"file": ("big.png", data)})
        assert response.status_code == 413
        assert "at most" in response.json()["detail"]
    for _ in range(2):  # no Content-Length at all: stopped by the streaming count
        response = http.post(
            PREDICT,
            content=_chunks(TWENTY_MB),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert "may have at most" in response.json()["detail"]  # the file's or the body's
    # A Content-Length far below the body: the app gets only the declared bytes (a cut-off
    # multipart body) and the surplus is no valid next request, so the server answers 400
    # (the app's, or uvicorn's own when it sees the junk first) and hangs up.
    answer = _lying_upload(base, declared=1024)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"malformed" in answer or b"Invalid HTTP request" in answer, answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1

    def settled() -> bool:
        return rss_bytes(api) - before < MAX_RSS_GROWTH_BYTES

    # The last body may still be being freed as its answer arrives: wait for the memory to
    # come back down instead of guessing how long that takes (a leak never comes down).
    with contextlib.suppress(TimeoutError):
        wait_until(settled, 5, "the API's memory to settle")
    growth = rss_bytes(api) - before
    assert growth < MAX_RSS_GROWTH_BYTES, f"API RSS grew by {growth / 2**20:.1f} MB"
    assert api.alive()


def test_a_hostile_name_creates_no_file(
    live: tuple[Proc, Proc, str], http: httpx.Client, corpus_digit: Digit, stack: Stack
) -> None:
    started = time.time()
    request = BY_NAME["path_traversal_name"].build(corpus_digit)
    assert http.request(**request.as_kwargs()).status_code == 200
    # Where the name would land if it were ever joined to a folder the processes use.
    for folder in (REPO, stack.folder, stack.model_path.parent):
        assert not (folder / "../../etc/passwd.png").resolve().exists()
        assert not (folder / "passwd.png").exists()
    fresh = [p for p in stack.folder.rglob("*") if p.is_file() and p.stat().st_mtime > started]
    assert all(p.suffix == ".log" for p in fresh), fresh


def test_the_service_stays_up_after_the_corpus(
    live: tuple[Proc, Proc, str], http: httpx.Client, corpus_digit: Digit
) -> None:
    api, worker, _ = live
    response = http.post(PREDICT, files={"file": ("d.png", plain_png(corpus_digit))})
    assert response.status_code == 200
    assert response.json()["prediction"] == str(CORPUS_DIGIT)
    assert http.get("/health").json() == {"status": "ok"}
    assert api.alive() and worker.alive()
