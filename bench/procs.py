"""Child processes for the benchmarks and the tests: Redis, uvicorn apps, Celery workers.

One harness for both: ``Proc`` is a child process with its output in a log file, never on
our terminal (the printed report stays readable; a failing test shows the log). In the
benchmark every process is registered with a ``Processes`` group, which stops them all
(SIGTERM, then SIGKILL) however the run ends; the tests' fixtures stop their own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parent.parent
REDIS_CONF = REPO / "deploy" / "redis.conf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_args(binary: str, port: int, folder: Path, *options: str) -> list[str]:
    """A private redis-server as the project recommends it (``deploy/redis.conf``), on
    loopback, keeping its data in ``folder``; ``options`` (``--name value``) come last.

    It starts from a copy in ``folder``: Sentinel rewrites the file of a server it
    reconfigures (``CONFIG REWRITE``), which must never be the project's own.
    """
    conf = folder / "redis.conf"
    if not conf.exists():
        shutil.copyfile(REDIS_CONF, conf)
    return [
        binary,
        str(conf),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(folder),
        *options,
    ]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def uvicorn_args(app: str, port: int, *options: str) -> list[str]:
    """``uvicorn APP`` on loopback at ``port``; ``options``: more of uvicorn's flags."""
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, "-m", "uvicorn", app, *host, *options]


def celery_worker_args(app: str, name: str, concurrency: int, *options: str) -> list[str]:
    """A Celery worker named ``name@<host>`` with ``concurrency`` prefork processes; no
    gossip or mingle (nothing here needs them, and they slow every start)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--hostname",
        f"{name}@%h",
        "--concurrency",
        str(concurrency),
        "--pool",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
        *options,
    ]


def answers_health(base: str) -> bool:
    """``GET /health`` answers 200."""
    try:
        return httpx.get(base + "/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    stop_rank: int = 0  # lower stops first: APIs, then workers, then Redis
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def send(self, sig: int) -> None:
        if self.popen is not None and self.alive():
            self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Send ``sig`` (SIGTERM: a clean stop), wait, kill past ``timeout``; the exit code."""
        if self.popen is None:
            return None
        self.send(sig)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def require_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early; its log ends with:\n{self.tail()}")


@dataclass
class Processes:
    """Starts processes and remembers them, so ``stop_all`` leaves nothing behind."""

    folder: Path
    env: dict[str, str]
    started: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], stop_rank: int = 0, **env: str) -> Proc:
        merged = {**self.env, **env}
        proc = Proc(name, args, merged, self.folder / f"{name}.log", stop_rank).start()
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        # APIs first (their waiting requests still get answers), then the workers that
        # answer them, then the Redis they all talk to.
        for proc in sorted(self.started, key=lambda p: p.stop_rank):
            proc.stop()
        self.started.clear()

    # --- the pieces -------------------------------------------------------------------

    def redis_server(self, name: str = "redis", replica_of: int | None = None) -> str:
        """A private Redis (its URL); ``replica_of``: the port of the master it replicates."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        data = self.folder / name
        data.mkdir(exist_ok=True)
        options = ["--maxclients", "10000"]
        if replica_of is not None:
            options += ["--replicaof", "127.0.0.1", str(replica_of)]
        proc = self.spawn(name, redis_server_args(binary, port, data, *options), stop_rank=2)
        url = f"redis://127.0.0.1:{port}"

        def answers() -> bool:
            proc.require_alive()
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
                if replica_of is None:
                    return bool(client.ping())
                return client.info("replication").get("master_link_status") == "up"
            except (redis.RedisError, OSError):
                return False

        wait_until(answers, 15, name)
        return url

    def uvicorn(self, name: str, app: str, **env: str) -> tuple[Proc, str]:
        port = free_port()
        options = ["--no-access-log", "--timeout-graceful-shutdown", "5", "--backlog", "4096"]
        proc = self.spawn(name, uvicorn_args(app, port, *options), **env)
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            proc.require_alive()
            return answers_health(base)

        wait_until(healthy, 60, name)
        return proc, base

    def celery_worker(
        self, name: str, app: str, concurrency: int, ready_marker: bytes, **env: str
    ) -> Proc:
        args = celery_worker_args(app, name, concurrency, "--without-heartbeat")
        proc = self.spawn(name, args, stop_rank=1, **env)

        def ready() -> bool:
            proc.require_alive()
            return ready_marker in proc.log_path.read_bytes()

        wait_until(ready, 120, name)
        return proc


# --- memory ---------------------------------------------------------------------------


def _status_mb(pid: int, field: str) -> float | None:
    """One ``/proc/<pid>/status`` memory field (``VmHWM``, ``VmRSS``) in MB, or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the peak resident set) of one process in MB, or None if it is gone."""
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float | None:
    """VmRSS (the resident set now) of one process in MB, or None if it is gone."""
    return _status_mb(pid, "VmRSS")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list: a child may be any thread's)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.extend(int(part) for part in text.split())
    return sorted(set(found))


def _tree(pid: int, read: Callable[[int], float | None]) -> dict[str, float | list[float] | None]:
    main = read(pid)
    kids = [rss for rss in (read(child) for child in children(pid)) if rss is not None]
    total = (main or 0.0) + sum(kids)
    return {"main_mb": main, "children_mb": kids, "total_mb": total}


def tree_peak_rss(pid: int) -> dict[str, float | list[float] | None]:
    """Peak RSS of a process and of its direct children (a prefork pool's processes)."""
    return _tree(pid, peak_rss_mb)


def tree_rss(pid: int) -> dict[str, float | list[float] | None]:
    """Current RSS of a process and of its direct children (a prefork pool's processes)."""
    return _tree(pid, rss_mb)
