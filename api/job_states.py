"""What a job is, and how Celery's task states translate into its state and answer.

A job is one upload; a task may carry several (micro-batching). ``JobRef`` says which task
and which position in it. The worker's answer is read from the task's stored state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import PredictionFailed
from shared.schemas import ItemError, JobState

CELERY_STATES = {
    "PENDING": JobState.queued,
    "RECEIVED": JobState.queued,
    "RETRY": JobState.queued,
    "STARTED": JobState.running,
    "SUCCESS": JobState.succeeded,
    "FAILURE": JobState.failed,
    "REVOKED": JobState.failed,
}
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

FAILURE_DETAILS = {
    "TimeLimitExceeded": "The job ran past its time limit on the worker.",
    "WorkerLostError": "The worker running the job died.",
}


@dataclass(frozen=True)
class JobRef:
    job_id: str
    task_id: str
    index: int

    @property
    def record(self) -> str:
        """How the job is recorded in Redis (``mnist:job:<job id>`` holds this)."""
        return f"{self.task_id}:{self.index}"

    @classmethod
    def from_record(cls, job_id: str, record: str) -> JobRef:
        task_id, _, index = record.rpartition(":")
        return cls(job_id, task_id, int(index))


def task_failure(meta: dict[str, Any]) -> ItemError:
    """A client-safe description of a failed task (never its traceback)."""
    result = meta.get("result")
    exc_type = result.get("exc_type") if isinstance(result, dict) else None
    detail = FAILURE_DETAILS.get(str(exc_type), "The job failed on the worker.")
    return ItemError(code=PredictionFailed.code, detail=detail)


def outcome(
    ref: JobRef, meta: dict[str, Any]
) -> tuple[JobState, dict[str, Any] | None, ItemError | None]:
    """A job's state, answer body and error, from its task's stored state.

    The answer is built as a plain dict: the worker made it from the shared schemas, and
    this is the hot path of every sync request.
    """
    state = CELERY_STATES.get(str(meta.get("status")), JobState.queued)
    if state is JobState.failed:
        return state, None, task_failure(meta)
    if state is not JobState.succeeded:
        return state, None, None
    result = meta.get("result") or {}
    try:
        item = result["items"][ref.index]
    except (KeyError, IndexError, TypeError):
        error = ItemError(code=PredictionFailed.code, detail="The worker's answer was malformed.")
        return JobState.failed, None, error
    if item.get("error"):
        return JobState.failed, None, ItemError(**item["error"])
    answer = {key: value for key, value in item["prediction"].items() if value is not None}
    answer["job_id"] = ref.job_id
    answer["model_version"] = item.get("model_version") or result.get("model_version", "unknown")
    answer["worker"] = result.get("worker", "unknown")
    return JobState.succeeded, answer, None
