"""No accepted job is lost: a Redis crash, Redis at its memory limit, a Sentinel failover.

Real processes on free loopback ports, every Redis from ``deploy/redis.conf``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.images import encode, png
from tests.integration.conftest import (
    RedisServer,
    Stack,
    start_private_redis,
    start_sentinel_group,
    submit,
    wait_all_done,
    wait_until,
)
from tests.integration.test_faults import faulty_png

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "durable-test-pass"


def expect_right_digits(done: dict[str, dict], labels: dict[str, int]) -> None:
    wrong = {
        job_id: status
        for job_id, status in done.items()
        if status["status"] != "succeeded" or status["result"]["prediction"] != str(labels[job_id])
    }
    assert not wrong, f"{len(wrong)} of {len(done)} jobs wrong, e.g. {next(iter(wrong.items()))}"


def test_a_redis_crash_loses_no_accepted_job(
    private_redis: RedisServer, small_model_path: Path, mnist_dir: Path, tmp_path: Path, digits
) -> None:
    stack = Stack(private_redis, small_model_path, mnist_dir, tmp_path)
    try:
        _, base = stack.api()
        uploads = [png(digit) for digit in digits]
        labels = {submit(base, uploads[i % 10]): i % 10 for i in range(300)}
        assert len(labels) == 300
        private_redis.kill()  # at once after the last 202: nothing had time to settle
        private_redis.start()  # same port, same data directory
        stack.worker("after-crash")
        expect_right_digits(wait_all_done(base, list(labels), 120), labels)
        print(f"crash: {len(labels)} jobs accepted, Redis SIGKILLed, all {len(labels)} succeeded")
    finally:
        stack.stop_all()


def _noisy_digit(digit: np.ndarray, side: int, seed: int) -> bytes:
    """A large PNG that compresses badly: the digit, scaled up, over faint noise."""
    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.NEAREST))
    noise = rng.integers(0, 24, size=big.shape, dtype=np.uint8)
    return encode(np.maximum(big, noise))


def test_memory_pressure_is_a_503_and_every_accepted_job_ends(
    small_model_path: Path, mnist_dir: Path, tmp_path: Path, digits
) -> None:
    server = start_private_redis(tmp_path / "redis", None, "--maxmemory", "8mb")
    assert server is not None, "redis-server is needed"
    stack = Stack(server, small_model_path, mnist_dir, tmp_path)
    try:
        _, base = stack.api(MAX_QUEUE_DEPTH="100000")
        uploads = [_noisy_digit(digits[i % 10], 420, i) for i in range(10)]
        assert min(len(u) for u in uploads) > 80_000
        statuses: Counter[int] = Counter()
        accepted: list[str] = []
        refusals: list[httpx.Response] = []
        lock = threading.Lock()

        def flood(offset: int) -> None:
            with httpx.Client(base_url=base, timeout=15) as client:
                for i in range(40):
                    data = uploads[(offset + i) % 10]
                    response = client.post(
                        "/predict/mnist", params={"async": "true"}, files={"file": ("d.png", data)}
                    )
                    with lock:
                        statuses[response.status_code] += 1
                        if response.status_code == 202:
                            accepted.append(response.json()["job_id"])
                        elif response.status_code == 503:
                            refusals.append(response)

        threads = [threading.Thread(target=flood, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(statuses) <= {202, 503}, statuses
        assert statuses[202] >= 5 and statuses[503] >= 20, statuses
        assert all(r.headers.get("Retry-After") for r in refusals)
        assert {r.json()["detail"] for r in refusals} == {
            "The job queue is out of memory; try again shortly."
        }
        stack.worker("drain")
        done = wait_all_done(base, accepted, 120)
        assert len(done) == len(accepted)  # each one ended, succeeded or failed
        ended = Counter(status["status"] for status in done.values())
        assert ended["succeeded"] >= 1
        print(f"memory: answers {dict(statuses)}; the {len(accepted)} accepted ended {dict(ended)}")
    finally:
        stack.stop_all()
        server.stop()


def test_a_result_redis_refuses_is_stored_once_it_has_room(
    small_model_path: Path, mnist_dir: Path, tmp_path: Path, digits
) -> None:
    server = start_private_redis(tmp_path / "redis", None, "--maxmemory", "6mb")
    assert server is not None, "redis-server is needed"
    stack = Stack(server, small_model_path, mnist_dir, tmp_path)
    client = server.client()
    try:
        _, base = stack.api()
        worker = stack.worker(
            "refused",
            faults=True,
            TASK_SOFT_TIME_LIMIT_SECONDS="4",
            TASK_TIME_LIMIT_SECONDS="15",
        )
        job_id = submit(base, faulty_png(digits[3], "slow"))  # 3 s in the worker
        wait_until(lambda: client.keys("mnist:attempts:*") != [], 10, "the worker to take it")
        # Redis reaches its memory limit while the task runs: its result will be refused.
        client.config_set("maxmemory", 1)
        refusal = b"Redis refused the result"
        wait_until(lambda: refusal in worker.log_path.read_bytes(), 15, "the refusal")
        assert httpx.get(f"{base}/jobs/{job_id}", timeout=5).json()["status"] != "succeeded"
        client.config_set("maxmemory", "6mb")  # room again: the retry stores the result
        done = wait_all_done(base, [job_id], 60)
        assert done[job_id]["status"] == "succeeded"
        assert done[job_id]["result"]["prediction"] == "3"
    finally:
        stack.stop_all()
        server.stop()


def test_a_sentinel_failover_loses_no_accepted_job(
    small_model_path: Path, mnist_dir: Path, tmp_path: Path, digits
) -> None:
    group = start_sentinel_group(tmp_path / "ha", PASSWORD)
    via_sentinel = {
        "REDIS_SENTINELS": group.setting,
        "REDIS_URL": f"redis://:{PASSWORD}@unused:1/0",
        "REDIS_MIN_REPLICAS": "1",
        "SYNC_TIMEOUT_SECONDS": "5",
    }
    stack = Stack(group.master, small_model_path, mnist_dir, tmp_path)
    stack_env = stack.env

    def env(**overrides: str) -> dict[str, str]:
        return stack_env(**{**via_sentinel, **overrides})

    stack.env = env  # type: ignore[method-assign]
    try:
        _, base = stack.api()
        stack.worker("ha-a")
        stack.worker("ha-b")
        uploads = [png(digit) for digit in digits]
        labels: dict[str, int] = {}
        async_codes: Counter[int] = Counter()
        sync_codes: Counter[int] = Counter()
        refused_at: list[float] = []
        stop = threading.Event()

        def async_stream() -> None:
            with httpx.Client(base_url=base, timeout=15) as client:
                n = 0
                while not stop.is_set():
                    response = client.post(
                        "/predict/mnist",
                        params={"async": "true"},
                        files={"file": ("d.png", uploads[n % 10])},
                    )
                    async_codes[response.status_code] += 1
                    if response.status_code == 202:
                        labels[response.json()["job_id"]] = n % 10
                    else:
                        refused_at.append(time.monotonic())
                    n += 1
                    stop.wait(0.02)

        def sync_stream() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                n = 0
                while not stop.is_set():
                    response = client.post(
                        "/predict/mnist", files={"file": ("d.png", uploads[n % 10])}
                    )
                    sync_codes[response.status_code] += 1
                    n += 1

        threads = [threading.Thread(target=async_stream), threading.Thread(target=sync_stream)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(labels) >= 100, 60, "100 jobs before the failover")
        old_port = group.master.port
        group.master.kill()
        killed = time.monotonic()
        wait_until(lambda: group.master_port() not in (None, old_port), 30, "the promotion")
        promoted = time.monotonic() - killed
        # The old master comes back (its supervisor restarts it) as a replica of the new one:
        # with REDIS_MIN_REPLICAS=1 and no replica left, that is what lets jobs in again.
        group.rejoin(group.master)
        count_at_promotion = len(labels)
        wait_until(lambda: len(labels) >= count_at_promotion + 100, 60, "100 jobs after it")
        stop.set()
        for thread in threads:
            thread.join()
        refused = [t - killed for t in refused_at if t >= killed]
        window = max(refused) - min(refused) if refused else 0.0
        assert window <= 15, f"predictions refused for {window:.1f} s"
        assert set(async_codes) <= {202, 503}, async_codes
        assert set(sync_codes) <= {200, 503, 504}, sync_codes
        assert sync_codes[200] > 0
        expect_right_digits(wait_all_done(base, list(labels), 120), labels)
        print(
            f"failover: promoted after {promoted:.1f} s; {len(labels)} jobs accepted, all "
            f"succeeded; refused for {window:.1f} s; "
            f"async {dict(async_codes)}, sync {dict(sync_codes)}"
        )
    finally:
        stop.set()
        stack.stop_all()
        group.stop()
