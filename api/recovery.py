"""Finding task messages lost between Redis and a worker, and queueing them again.

kombu's Redis transport fetches a message with ``BRPOP`` and only then, in a second
command, records it as unacknowledged (the ``unacked`` hash, from which it redelivers the
task of a worker that dies). If Redis goes down between the two (a crash, a failover), or
the worker's connection breaks, the message has left the queue and is recorded nowhere:
the job stays ``queued`` for good. ``test_a_sentinel_failover_loses_no_accepted_job`` lost
one job of about 200 this way in 2 of 8 runs before this module existed.

So the publisher keeps a copy of every message it sends (``SENT_KEY``, with the time in
``SENT_AT_KEY``), and ``Recovery`` looks, every ``LOST_TASK_CHECK_SECONDS``, at copies
older than ``LOST_TASK_GRACE_SECONDS``:

- its result exists, or its jobs have expired: the copy is dropped;
- a worker holds it (kombu's ``unacked`` hash has its delivery tag) or it is still in the
  queue, as sent or as kombu puts back a message it restores: nothing to do yet (a worker
  that dies is kombu's to redeliver);
- otherwise it is lost: it goes back on the queue, and is counted and logged.

A scan script drops copies and names candidates; for each, a second script checks again
(with kombu's restored form, which only Python derives) and queues it. Every API process
may run them: each script is atomic, and a message put back is in the queue for the next
look. A message caught in the instant between ``BRPOP`` and kombu's record
would also be put back and run twice: jobs run at least once, as the README says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from api.messages import redelivered
from shared.queue import SENT_AT_KEY, SENT_KEY, UNACKED_KEY

log = logging.getLogger("api.recovery")

# KEYS: the sent copies, their times, the queue, kombu's unacked hash. ARGV: grace (ms),
# how long jobs live (ms), the result key prefix, the most copies to look at. Drops the
# copies of answered or expired tasks; returns the number looked at, the number dropped,
# then (task id, message) for each copy that is neither held by a worker nor in the queue
# as it was sent: a candidate, which REQUEUE_SCRIPT decides on.
SCAN_SCRIPT = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]),
                       'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {#ids / 2, 0}
for i = 1, #ids, 2 do
  local id, sent = ids[i], tonumber(ids[i + 1])
  local copy = redis.call('HGET', KEYS[1], id)
  local cut = copy and string.find(copy, '\\n', 1, true)
  if (not cut) or redis.call('EXISTS', ARGV[3] .. id) == 1
      or sent < now - tonumber(ARGV[2]) then
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    out[2] = out[2] + 1
  else
    local message = string.sub(copy, cut + 1)
    -- from the tail: the oldest messages wait there, so a backlog is not scanned whole
    if redis.call('HEXISTS', KEYS[4], string.sub(copy, 1, cut - 1)) == 0
        and not redis.call('LPOS', KEYS[3], message, 'RANK', -1) then
      out[#out + 1] = id
      out[#out + 1] = message
    end
  end
end
return out
"""
# KEYS: the sent copies, the queue, kombu's unacked hash. ARGV: the task id, the message as
# kombu puts it back when it restores it, the result key prefix. Queues the sent message
# again only if it is still unanswered, not held, and in the queue in neither form;
# returns 1 if it did.
REQUEUE_SCRIPT = """
local copy = redis.call('HGET', KEYS[1], ARGV[1])
local cut = copy and string.find(copy, '\\n', 1, true)
if (not cut) or redis.call('EXISTS', ARGV[3] .. ARGV[1]) == 1 then return 0 end
local message = string.sub(copy, cut + 1)
if redis.call('HEXISTS', KEYS[3], string.sub(copy, 1, cut - 1)) == 1
    or redis.call('LPOS', KEYS[2], message, 'RANK', -1)
    or redis.call('LPOS', KEYS[2], ARGV[2], 'RANK', -1) then
  return 0
end
redis.call('LPUSH', KEYS[2], message)
return 1
"""
BATCH = 200  # copies per script call: bounds how long one call holds Redis


class Recovery:
    """Puts lost task messages back on ``queue``; ``start`` runs it in the background."""

    def __init__(
        self,
        redis: Redis,
        queue: str,
        *,
        result_key_prefix: str,
        check_seconds: float,
        grace_seconds: float,
        ttl_seconds: int,
        on_requeued: Callable[[int], None] = lambda _: None,
    ) -> None:
        self.queue = queue
        self.result_key_prefix = result_key_prefix
        self.check_seconds = check_seconds
        self.grace_ms = int(grace_seconds * 1000)
        self.ttl_ms = ttl_seconds * 1000
        self.on_requeued = on_requeued
        self._scan = redis.register_script(SCAN_SCRIPT)
        self._requeue = redis.register_script(REQUEUE_SCRIPT)
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> list[str]:
        """One look: the ids of the tasks put back on the queue. Scans batch after batch
        while whole batches of copies are being dropped, so under load the copies of
        answered tasks go as fast as they come."""
        candidates: list[tuple[str, str]] = []
        while True:
            looked, dropped, *rest = await self._scan(
                keys=[SENT_KEY, SENT_AT_KEY, self.queue, UNACKED_KEY],
                args=[self.grace_ms, self.ttl_ms, self.result_key_prefix, BATCH],
            )
            texts = [r.decode() if isinstance(r, bytes) else str(r) for r in rest]
            candidates += list(zip(texts[::2], texts[1::2], strict=True))
            if int(looked) < BATCH or int(dropped) == 0:
                break
        found = []
        for task_id, message in candidates:
            # kombu re-serialises a message it restores: look for that form too, or a task
            # it put back would run twice.
            again = redelivered(message)
            if await self._requeue(
                keys=[SENT_KEY, self.queue, UNACKED_KEY],
                args=[task_id, again, self.result_key_prefix],
            ):
                found.append(task_id)
                log.warning(
                    "task message lost between Redis and a worker; queued again",
                    extra={"task_id": task_id},
                )
        if found:
            self.on_requeued(len(found))
        return found

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except ResponseError as exc:  # the scripts failing: copies would pile up unseen
                log.warning("lost-task check failed", extra={"error": str(exc)})
            except (RedisError, OSError) as exc:  # Redis away: the next round tries again
                log.debug("lost-task check failed", extra={"error": str(exc)})
            await asyncio.sleep(self.check_seconds)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lost-task recovery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
