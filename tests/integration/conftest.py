"""Real processes on free ports: Celery workers, uvicorn, Redis with Sentinels.

Single Redis servers, and the fixtures that start them, are in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bench.procs import (
    Proc,
    answers_health,
    celery_worker_args,
    free_port,
    uvicorn_args,
    wait_until,
)
from tests.conftest import (
    SMALL_TRAIN_IMAGES,
    RedisServer,
    start_private_redis,
)

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    """Builds environments and starts workers and APIs against one Redis."""

    redis: RedisServer
    model_path: Path
    data_dir: Path
    folder: Path
    processes: list[Proc] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            REDIS_URL=self.redis.url,
            MODEL_PATH=str(self.model_path),
            MNIST_DATA_DIR=str(self.data_dir),
            TRAIN_LIMIT=str(SMALL_TRAIN_IMAGES),
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides)
        return env

    def worker(
        self,
        name: str,
        concurrency: int = 1,
        faults: bool = False,
        wait: bool = True,
        **overrides: str,
    ) -> Proc:
        extra = ["--include", "tests.integration.faults"] if faults else []
        args = celery_worker_args("worker.celery_app", name, concurrency, *extra)
        process = Proc(
            f"worker-{name}", args, self.env(**overrides), self.folder / f"worker-{name}.log"
        ).start()
        self.processes.append(process)
        if wait:
            self.wait_ready(process)
        return process

    @staticmethod
    def wait_ready(process: Proc, timeout: float = 60) -> None:
        wait_until(
            lambda: b" ready." in process.log_path.read_bytes() or not process.alive(),
            timeout,
            process.name,
        )
        assert process.alive(), process.log()

    def api(self, **overrides: str) -> tuple[Proc, str]:
        port = free_port()
        processes = overrides.pop("API_PROCESSES", "1")
        args = uvicorn_args(
            "api.main:app", port, "--timeout-graceful-shutdown", "10", "--workers", processes
        )
        process = Proc("api", args, self.env(**overrides), self.folder / f"api-{port}.log")
        process.start()
        self.processes.append(process)
        base = f"http://127.0.0.1:{port}"

        wait_until(lambda: answers_health(base) or not process.alive(), 30, "api")
        assert process.alive(), process.log()
        return process, base

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


# --- jobs, as a client sees them ------------------------------------------------------


def submit(base: str, data: bytes) -> str:
    response = httpx.post(
        base + "/predict/mnist",
        params={"async": "true"},
        files={"file": ("d.png", data)},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def predict(base: str, data: bytes, request_id: str) -> dict[str, Any]:
    """A sync prediction sent with our own request id; its answer."""
    response = httpx.post(
        base + "/predict/mnist",
        files={"file": ("d.png", data)},
        headers={"x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def job(base: str, job_id: str) -> dict:
    return dict(httpx.get(f"{base}/jobs/{job_id}", timeout=5).json())


def wait_all_done(base: str, job_ids: list[str], timeout: float) -> dict[str, dict]:
    done: dict[str, dict] = {}
    last: dict[str, dict] = {}

    def finished() -> bool:
        for job_id in job_ids:
            if job_id not in done:
                status = last[job_id] = job(base, job_id)
                if status.get("status") in ("succeeded", "failed"):  # 503: ask again
                    done[job_id] = status
        return len(done) == len(job_ids)

    try:
        wait_until(finished, timeout, f"{len(job_ids)} jobs")
    except TimeoutError as exc:  # say which jobs, and what the API last said of them
        waiting = {j: last.get(j) for j in job_ids if j not in done}
        raise TimeoutError(f"{exc}: {len(waiting)} unfinished, {waiting}") from None
    return done


# --- Sentinel ---------------------------------------------------------------------------

MASTER_NAME = "mnist"


@dataclass
class SentinelGroup:
    """A master, its replica and three Sentinels (quorum 2), all on free loopback ports."""

    master: RedisServer
    replica: RedisServer
    sentinels: list[Proc]
    ports: list[int]

    @property
    def setting(self) -> str:
        """The ``REDIS_SENTINELS`` value that reaches these Sentinels."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers names it."""
        for port in self.ports:
            try:
                client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1)
                address = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
            except (redis.RedisError, OSError):
                continue
            if address:
                return int(address[1])
        return None

    def rejoin(self, server: RedisServer) -> None:
        """Start a server that was down as a replica of the master Sentinel names now, as
        the start script in ``docker-compose.ha.yml`` does (Sentinel itself would wait
        about 10 s before turning a returning old master into a replica)."""
        port = self.master_port()
        assert server.process is not None and port is not None
        conf = Path(server.process.args[1])
        conf.write_text(conf.read_text() + f"\nreplicaof 127.0.0.1 {port}\n")
        server.start()

    def stop(self) -> None:
        for process in [*self.sentinels, self.replica.process, self.master.process]:
            if process is not None:
                process.stop()


def _sentinel_ready(port: int) -> bool:
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1)
        raw = client.execute_command("SENTINEL", "master", MASTER_NAME)
    except (redis.RedisError, OSError):
        return False
    info = dict(zip(raw[::2], raw[1::2], strict=True)) if isinstance(raw, list) else raw
    text = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in info.items()
    }
    return text.get("num-slaves") == "1" and text.get("num-other-sentinels") == "2"


def start_sentinel_group(folder: Path, password: str) -> SentinelGroup:
    """Everything from ``deploy/redis.conf``, as ``docker-compose.ha.yml`` runs it, with a
    1 s down-after (compose: 5 s) so the test's failover starts quickly."""
    master = start_private_redis(folder / "master", None, password=password)
    if master is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is needed (REQUIRE_REDIS=1)")
        pytest.skip("redis-server binary not found")
    replica = start_private_redis(
        folder / "replica", None, "--replicaof", "127.0.0.1", str(master.port), password=password
    )
    assert replica is not None
    binary = shutil.which("redis-server")
    assert binary is not None
    ports = [free_port() for _ in range(3)]
    sentinels = []
    for index, port in enumerate(ports):
        conf = folder / f"sentinel-{index}.conf"  # Sentinel rewrites its file: one each
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
            f"sentinel auth-pass {MASTER_NAME} {password}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        args = [binary, str(conf), "--sentinel"]
        log_path = folder / f"sentinel-{index}.log"
        sentinels.append(Proc(f"sentinel-{index}", args, dict(os.environ), log_path).start())
    group = SentinelGroup(master, replica, sentinels, ports)
    try:
        wait_until(lambda: all(_sentinel_ready(port) for port in ports), 30, "3 Sentinels")
    except BaseException:
        group.stop()
        raise
    return group


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer,
    small_model_path: Path,
    mnist_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    built = Stack(redis_server, small_model_path, mnist_dir, tmp_path_factory.mktemp("stack"))
    yield built
    built.stop_all()
    failed = getattr(request.node, "failed_logs", False)
    if failed:  # pragma: no cover - diagnostics
        for process in built.processes:
            print(f"--- {process.name} ---\n{process.log()[-4000:]}")
