"""``make run``: serve on http://127.0.0.1:8000 with whatever this machine has.

With a reachable Redis (``REDIS_URL``), it trains the model if missing, then runs the
real path: a Celery worker process and the API. Without one, it runs the API alone in
embedded mode (tasks inside the API process) and says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import redis

from shared.settings import get_settings, redacted_url


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def _exit_on_sigterm(*_: object) -> None:
    raise SystemExit(0)  # runs the ``finally`` blocks below, which stop the children


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = get_settings()
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    env = dict(os.environ)
    children: list[subprocess.Popen[bytes]] = []
    if settings.embedded or not redis_answers(settings.redis_url):
        print(
            f"run: no Redis at {redacted_url(settings.redis_url)}: starting in EMBEDDED mode "
            "(predictions run inside the API process).",
            file=sys.stderr,
        )
        env["EMBEDDED"] = "1"
    else:
        print(
            f"run: Redis at {redacted_url(settings.redis_url)}; training the model if needed",
            file=sys.stderr,
        )
        subprocess.check_call([sys.executable, "-m", "worker.train"], env=env)
        worker = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            "worker",
            "--loglevel",
            settings.log_level,
            "--concurrency",
            os.environ.get("WORKERS", "1"),
        ]
        children.append(subprocess.Popen(worker, env=env))
    api = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", host, "--port", port]
    server = subprocess.Popen(api, env=env)
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
