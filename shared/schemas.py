"""The payloads both sides agree on: the task's input and output, and the HTTP bodies.

Task messages are JSON (Celery's JSON serializer), so everything here is built from
strings, numbers, lists and dicts.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TASK_PREDICT = "mnist.predict"
"""The task's name: the API sends it by name and never imports the worker."""


class DigitProbability(BaseModel):
    digit: str = Field(examples=["7"])
    probability: float = Field(ge=0.0, le=1.0, examples=[0.98])


class Prediction(BaseModel):
    """One image's answer, as the worker computes it."""

    prediction: str = Field(description="The predicted digit, 0-9.", examples=["7"])
    confidence: float = Field(ge=0.0, le=1.0, description="Calibrated probability of it.")
    top3: list[DigitProbability] = Field(description="The three likeliest digits.")
    input_image: str | None = Field(
        default=None,
        description="With ?include_input=true: the 28x28 image the model saw, as a PNG data URL.",
    )


class ItemError(BaseModel):
    code: str
    detail: str


class TaskItem(BaseModel):
    """One image of a task: either a prediction or an error (never both)."""

    prediction: Prediction | None = None
    error: ItemError | None = None
    model_version: str | None = Field(
        default=None, description="Set while a canary serves: the version that answered."
    )


class TaskTimings(BaseModel):
    queue_wait_ms: float | None = None
    inference_ms: float


class TaskResult(BaseModel):
    """What the ``mnist.predict`` task returns (as a dict)."""

    items: list[TaskItem]
    worker: str
    model_version: str
    timings: TaskTimings


# --- HTTP bodies --------------------------------------------------------------------------


class PredictionResponse(Prediction):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "prediction": "7",
                "confidence": 0.9981,
                "top3": [
                    {"digit": "7", "probability": 0.9981},
                    {"digit": "9", "probability": 0.0011},
                    {"digit": "2", "probability": 0.0004},
                ],
                "job_id": "2f1c7a0e-8a4e-4c6b-9a53-1c4f3f0b7d2e",
                "model_version": "3b9d1f2a6c4e",
                "worker": "celery@host",
            }
        }
    )

    job_id: str
    model_version: str
    worker: str


class JobState(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class JobAccepted(BaseModel):
    job_id: str
    status: Literal[JobState.queued] = JobState.queued
    status_url: str


class JobStatus(BaseModel):
    job_id: str
    status: JobState
    result: PredictionResponse | None = None
    error: ItemError | None = None


class BatchItem(BaseModel):
    """One file of a batch: its answer, or its own error (with the status it would have had)."""

    filename: str
    status_code: int
    result: PredictionResponse | None = None
    error: ItemError | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]


class ErrorResponse(BaseModel):
    detail: str


class TimeoutResponse(BaseModel):
    detail: str
    job_id: str
    status_url: str
