"""``python -m worker.health``: exit 0 if a process of this host's worker has a live
heartbeat in Redis.

For container healthchecks: one set read and one MGET, no broadcast to every worker (as a
Celery ping is).
"""

from __future__ import annotations

import socket
import sys

import redis

from shared import redis_clients
from shared.settings import get_settings
from worker.heartbeat import node_processes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    node = args[0] if args else f"celery@{socket.gethostname()}"
    settings = get_settings()
    try:
        client = redis_clients.sync_client(settings, socket_connect_timeout=2, socket_timeout=2)
        alive = len(node_processes(client, node))
    except (redis.RedisError, OSError) as exc:
        print(f"health: Redis unreachable: {exc}", file=sys.stderr)
        return 1
    state = f"alive ({alive} process{'es' if alive > 1 else ''})" if alive else "has no heartbeat"
    print(f"health: {node} {state}", file=sys.stderr)
    return 0 if alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
