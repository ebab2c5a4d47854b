"""Reading jobs back: a job id's record, and its status from its task's stored state.

The records are written by the publisher, in the same atomic step that queues the task
(``api/publisher.py``); an id without a record was never issued, or has expired.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.job_states import JobRef, outcome
from api.results import parse_meta
from shared.errors import BrokerUnavailable, JobNotFound
from shared.queue import ATTEMPTS_KEY_PREFIX, JOB_KEY_PREFIX
from shared.schemas import JobState, JobStatus, PredictionResponse


class JobStore:
    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self.redis = redis
        self.key_prefix = key_prefix  # result key = key_prefix + task id (as the listener's)

    async def status(self, job_id: str) -> JobStatus:
        try:
            record = await self.redis.get(JOB_KEY_PREFIX + job_id)
            if record is None:
                raise JobNotFound()
            text = record.decode() if isinstance(record, bytes) else str(record)
            ref = JobRef.from_record(job_id, text)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.key_prefix + ref.task_id)
                pipe.exists(ATTEMPTS_KEY_PREFIX + ref.task_id)
                raw_meta, started = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable() from exc
        meta = parse_meta(raw_meta)
        if meta is None:
            # No result yet: a worker that took the task has counted its delivery.
            state = JobState.running if started else JobState.queued
            return JobStatus(job_id=job_id, status=state)
        state, answer, error = outcome(ref, meta)
        result = PredictionResponse.model_validate(answer) if answer is not None else None
        return JobStatus(job_id=job_id, status=state, result=result, error=error)
