"""Waiting for task results without blocking the event loop.

Celery's Redis backend stores each task's state under a key named after the task
(``celery-task-meta-<id>``, as the backend's ``get_key_for_task`` says) and publishes it on
a channel of the same name. One pattern subscription per API process
receives every state change and resolves the futures of the requests waiting for it:
no thread and no subscription per request. Because messages can be missed (a Redis
restart drops subscriptions), every wait also re-reads the key once a second, so a
wait always ends by its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.job_states import READY_STATES

log = logging.getLogger("api.results")

RECHECK_SECONDS = 1.0
RECONNECT_SECONDS = (0.1, 0.25, 0.5, 1.0)


def parse_meta(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


@dataclass
class _Expected:
    future: asyncio.Future[dict[str, Any]]
    holds: int = 0
    epoch: int = -1  # the subscription it was registered under (-1: none was live)


class ResultListener:
    """Resolves per-task futures from one pattern subscription."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._redis = redis
        self.key_prefix = key_prefix  # result key (and channel) = key_prefix + task id
        self._pending: dict[str, _Expected] = {}
        self._runner: asyncio.Task[None] | None = None
        self._epoch = 0  # bumped on every (re)subscription
        self.connected = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="result-listener")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    async def _run(self) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self.key_prefix + "*")
                self._epoch += 1
                self.connected.set()
                if failures:
                    log.info("result listener reconnected")
                    await self._recheck_all()  # anything published while we were away
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=RECHECK_SECONDS)
                    if message is not None:
                        self._on_message(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected.clear()
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                if failures == 0:
                    log.warning("result listener lost Redis (%s); reconnecting", exc)
                failures += 1
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    def _on_message(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if not isinstance(channel, str):
            return
        expected = self._pending.get(channel.removeprefix(self.key_prefix))
        if expected is None or expected.future.done():
            return
        meta = parse_meta(message.get("data"))
        if meta is not None and meta.get("status") in READY_STATES:
            expected.future.set_result(meta)

    async def _recheck_all(self) -> None:
        for task_id in list(self._pending):
            await self._resolve_from_key(task_id)

    async def _resolve_from_key(self, task_id: str) -> None:
        meta = await self.fetch(task_id)
        expected = self._pending.get(task_id)
        if meta is None or meta.get("status") not in READY_STATES or expected is None:
            return
        if not expected.future.done():
            expected.future.set_result(meta)

    # --- queries --------------------------------------------------------------------------

    async def fetch(self, task_id: str) -> dict[str, Any] | None:
        """The task's current state as stored by the worker, or None if it has none yet."""
        return parse_meta(await self._redis.get(self.key_prefix + task_id))

    def expect(self, task_id: str) -> None:
        """Hold a future for ``task_id`` until ``forget``; call before sending the task."""
        expected = self._pending.get(task_id)
        if expected is None:
            live = self._epoch if self.connected.is_set() else -1
            expected = _Expected(asyncio.get_running_loop().create_future(), epoch=live)
            self._pending[task_id] = expected
        expected.holds += 1

    def forget(self, task_id: str) -> None:
        expected = self._pending.get(task_id)
        if expected is not None:
            expected.holds -= 1
            if expected.holds <= 0:
                del self._pending[task_id]

    async def wait(self, task_id: str, timeout: float) -> dict[str, Any] | None:
        """The task's final state, or None if it is not ready within ``timeout`` seconds."""
        already_expected = task_id in self._pending
        self.expect(task_id)
        expected = self._pending[task_id]
        deadline = time.monotonic() + timeout
        try:
            # A result published while nobody listened is only in its key: read it once.
            if not already_expected or expected.epoch != self._epoch:
                await self._resolve_from_key(task_id)
            while not expected.future.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(
                        asyncio.shield(expected.future), timeout=min(RECHECK_SECONDS, remaining)
                    )
                except TimeoutError:
                    await self._resolve_from_key(task_id)
            return expected.future.result()
        finally:
            self.forget(task_id)
