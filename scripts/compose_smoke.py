"""HTTP half of ``scripts/compose_smoke.sh``: send MNIST test images to a running service.

Standard library only, so it runs with any Python 3.11 on the host: the IDX files are
parsed with ``gzip``/``struct`` and each digit is written as a PNG with ``zlib``.

Half the requests are synchronous, half asynchronous (202, then polling the job). They are
sent concurrently: one client sending one request at a time would mostly meet the same
idle worker, and the point is to see the queue spread the work.

``--submit-to FILE`` only submits async jobs and writes their ids (for the durability step,
while no worker runs); ``--collect-from FILE`` later waits for each of them and checks it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"


@dataclass(frozen=True)
class Outcome:
    index: int
    mode: str  # "sync" or "async"
    label: int
    prediction: int | None
    worker: str | None
    seconds: float
    error: str | None = None


def read_idx(path: Path) -> tuple[tuple[int, ...], bytes]:
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return shape, data[4 + 4 * ndim :]


def png_gray(pixels: bytes, width: int, height: int) -> bytes:
    """An 8-bit grayscale PNG (no filtering: the images are tiny)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    rows = b"".join(b"\x00" + pixels[y * width : (y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def load_digits(data_dir: Path, offset: int, count: int) -> list[tuple[bytes, int]]:
    (total, height, width), pixels = read_idx(data_dir / IMAGES)
    _, labels = read_idx(data_dir / LABELS)
    if offset + count > total:
        raise SystemExit(f"only {total} test images; asked for {offset}..{offset + count}")
    size = height * width
    return [
        (png_gray(pixels[i * size : (i + 1) * size], width, height), labels[i])
        for i in range(offset, offset + count)
    ]


def request_json(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310 (http URL given by the caller)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def multipart(png: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def predict(base: str, index: int, png: bytes, label: int, poll_timeout: float) -> Outcome:
    mode = "sync" if index % 2 == 0 else "async"
    started = time.monotonic()

    def failed(error: str) -> Outcome:
        return Outcome(index, mode, label, None, None, time.monotonic() - started, error)

    body, headers = multipart(png)
    try:
        if mode == "sync":
            status, answer = request_json(f"{base}/predict/mnist", body, headers)
            if status != 200:
                return failed(f"HTTP {status}: {answer}")
        else:
            status, accepted = request_json(f"{base}/predict/mnist?async=true", body, headers)
            if status != 202:
                return failed(f"HTTP {status}: {accepted}")
            deadline = time.monotonic() + poll_timeout
            while True:
                status, job = request_json(f"{base}{accepted['status_url']}")
                if status == 200 and job.get("status") == "succeeded":
                    answer = job["result"]  # type: ignore[assignment]
                    break
                if status != 200 or job.get("status") == "failed":
                    return failed(f"job: HTTP {status}: {job}")
                if time.monotonic() > deadline:
                    return failed(f"job still {job.get('status')} after {poll_timeout}s")
                time.sleep(0.1)
    except (OSError, ValueError, KeyError) as exc:  # URLError and timeouts are OSErrors
        return failed(f"{type(exc).__name__}: {exc}")
    return Outcome(
        index,
        mode,
        label,
        int(str(answer["prediction"])),
        str(answer.get("worker")),
        time.monotonic() - started,
    )


def submit_jobs(base: str, digits: list[tuple[bytes, int]], path: Path, tag: str) -> int:
    """Queue every digit as an async job; write ``job_id label`` lines to ``path``."""
    lines, refused = [], []
    for png, label in digits:
        body, headers = multipart(png)
        status, accepted = request_json(f"{base}/predict/mnist?async=true", body, headers)
        if status == 202:
            lines.append(f"{accepted['job_id']} {label}")
        else:
            refused.append(f"HTTP {status}: {accepted}")
    path.write_text("\n".join(lines) + "\n")
    print(f"{tag}: {len(lines)}/{len(digits)} jobs accepted")
    for problem in refused[:5]:
        print(f"{tag}: FAIL: {problem}")
    return 1 if refused else 0


def collect_jobs(base: str, path: Path, timeout: float, min_accuracy: float, tag: str) -> int:
    """Wait for every job in ``path``; all must succeed, with the given accuracy."""
    jobs = dict(line.split() for line in path.read_text().splitlines() if line.strip())
    outcome: dict[str, str] = {}
    correct = 0
    deadline = time.monotonic() + timeout
    while len(outcome) < len(jobs) and time.monotonic() < deadline:
        for job_id, label in jobs.items():
            if job_id in outcome:
                continue
            try:
                status, job = request_json(f"{base}/jobs/{job_id}")
            except OSError:
                continue  # the API is still reconnecting: ask again
            state = str(job.get("status")) if status == 200 else f"HTTP {status}"
            if state in ("succeeded", "failed") or status == 404:
                outcome[job_id] = state
                result = job.get("result")
                if isinstance(result, dict) and str(result.get("prediction")) == label:
                    correct += 1
        time.sleep(0.2)
    states = Counter(outcome.values())
    print(f"{tag}: {states['succeeded']}/{len(jobs)} succeeded, {correct} correct; {dict(states)}")
    problems = []
    if states["succeeded"] < len(jobs):
        problems.append(f"{len(jobs) - states['succeeded']} jobs lost or failed")
    if jobs and correct / len(jobs) < min_accuracy:
        problems.append(f"accuracy {correct / len(jobs):.1%} < {min_accuracy:.0%}")
    for problem in problems:
        print(f"{tag}: FAIL: {problem}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the API, e.g. http://127.0.0.1:8000")
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with the IDX files")
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--offset", type=int, default=0, help="first test image to send")
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--min-accuracy", type=float, default=0.90)
    parser.add_argument("--min-workers", type=int, default=1, help="distinct workers required")
    parser.add_argument("--max-workers", type=int, default=None, help="distinct workers allowed")
    parser.add_argument("--poll-timeout", type=float, default=30.0)
    parser.add_argument("--label", default="predictions", help="prefix of the printed lines")
    parser.add_argument("--submit-to", type=Path, help="only queue async jobs; ids to this file")
    parser.add_argument("--collect-from", type=Path, help="only wait for the jobs in this file")
    args = parser.parse_args(argv)

    base = args.url.rstrip("/")
    if args.collect_from:
        return collect_jobs(
            base, args.collect_from, args.poll_timeout, args.min_accuracy, args.label
        )
    digits = load_digits(args.data_dir, args.offset, args.count)
    if args.submit_to:
        return submit_jobs(base, digits, args.submit_to, args.label)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        outcomes = list(
            pool.map(
                lambda item: predict(base, item[0], item[1][0], item[1][1], args.poll_timeout),
                enumerate(digits),
            )
        )
    elapsed = time.monotonic() - started

    tag = args.label
    answered = [o for o in outcomes if o.error is None]
    correct = sum(o.prediction == o.label for o in answered)
    modes = Counter(o.mode for o in answered)
    per_worker = Counter(o.worker for o in answered)
    latencies = sorted(o.seconds for o in answered) or [0.0]
    accuracy = correct / len(outcomes) if outcomes else 0.0
    print(
        f"{tag}: {len(answered)}/{len(outcomes)} answered ({modes['sync']} sync, "
        f"{modes['async']} async) in {elapsed:.1f}s, {args.concurrency} at a time; "
        f"p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
    print(f"{tag}: {correct}/{len(outcomes)} correct ({accuracy:.1%})")
    for worker, count in sorted(per_worker.items(), key=lambda item: str(item[0])):
        print(f"{tag}:   {count:4d} answered by {worker}")
    for outcome in [o for o in outcomes if o.error is not None][:5]:
        print(f"{tag}: error on image {args.offset + outcome.index}: {outcome.error}")

    problems: list[str] = []
    if len(answered) < len(outcomes):
        problems.append(f"{len(outcomes) - len(answered)} requests failed")
    if accuracy < args.min_accuracy:
        problems.append(f"accuracy {accuracy:.1%} < {args.min_accuracy:.0%}")
    if len(per_worker) < args.min_workers:
        problems.append(f"{len(per_worker)} distinct workers < {args.min_workers}")
    if args.max_workers is not None and len(per_worker) > args.max_workers:
        problems.append(f"{len(per_worker)} distinct workers > {args.max_workers}")
    for problem in problems:
        print(f"{tag}: FAIL: {problem}")
    if not problems:
        print(f"{tag}: ok ({len(per_worker)} distinct workers)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
