"""``make run``: serve on http://127.0.0.1:8000 with whatever this machine has.

With a reachable Redis (``REDIS_URL``), it trains the model if missing, then runs the
real path: a Celery worker process and the API. Without one, it runs the API alone in
embedded mode (tasks inside the API process) and says so. Every line it and its children
print is a JSON log line (see README, Logs).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import redis

from shared.logs import configure_logging
from shared.settings import Settings, get_settings, redacted_url

log = logging.getLogger("run")

REPO = Path(__file__).resolve().parent.parent
# Uvicorn's own lines ("Started server process", "Uvicorn running on ...") as our JSON.
API_LOG_CONFIG = REPO / "api" / "log_config.json"


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def api_command(host: str, port: str) -> list[str]:
    return [
        *(sys.executable, "-m", "uvicorn", "api.main:app", "--host", host, "--port", port),
        *("--log-config", str(API_LOG_CONFIG)),
    ]


def worker_command(log_level: str, processes: str) -> list[str]:
    # --quiet: no plain-text banner; the worker logs its facts as JSON ("worker ready").
    return [
        *(sys.executable, "-m", "celery", "-A", "worker.celery_app", "--quiet", "worker"),
        *("--loglevel", log_level, "--concurrency", processes),
    ]


@dataclass(frozen=True)
class Plan:
    """What ``make run`` starts: the API alone (embedded), or training, a worker and the API."""

    embedded: bool
    train: list[str] | None
    worker: list[str] | None
    api: list[str]


def plan(settings: Settings, environ: dict[str, str], redis_up: bool) -> Plan:
    host, port = environ.get("HOST", "127.0.0.1"), environ.get("PORT", "8000")
    api = api_command(host, port)
    if settings.embedded or not redis_up:
        return Plan(embedded=True, train=None, worker=None, api=api)
    return Plan(
        embedded=False,
        train=[sys.executable, "-m", "worker.train"],
        worker=worker_command(settings.log_level, environ.get("WORKERS", "1")),
        api=api,
    )


def _exit_on_sigterm(*_: object) -> None:
    raise SystemExit(0)  # runs the ``finally`` blocks below, which stop the children


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = get_settings()
    configure_logging(settings.log_level, service="run")
    env = dict(os.environ)
    redis_url = redacted_url(settings.redis_url)
    redis_up = not settings.embedded and redis_answers(settings.redis_url)
    steps = plan(settings, env, redis_up)
    children: list[subprocess.Popen[bytes]] = []
    if steps.embedded:
        log.warning(
            f"EMBEDDED MODE: no Redis at {redis_url}; predictions run inside the API process",
            extra={"redis": redis_url},
        )
        env["EMBEDDED"] = "1"
    else:
        assert steps.train is not None and steps.worker is not None
        log.info(f"Redis at {redis_url}: training the model if {settings.model_path} is missing")
        code = subprocess.call(steps.train, env=env)
        if code != 0:  # the trainer has said why in its last line
            log.error(f"training failed (exit {code}); nothing started")
            return code
        processes = int(env.get("WORKERS", "1"))
        log.info(
            f"REAL MODE: Redis at {redis_url}, {processes} worker process(es), "
            f"model {settings.model_path}",
            extra={
                "redis": redis_url,
                "worker_processes": processes,
                "model_path": str(settings.model_path),
            },
        )
        children.append(subprocess.Popen(steps.worker, env=env))
    server = subprocess.Popen(steps.api, env=env)
    children.insert(0, server)
    try:
        return server.wait()
    finally:
        for child in children:  # SIGTERM: each finishes what it is doing, then exits
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=60)


if __name__ == "__main__":
    raise SystemExit(main())
