"""Prometheus metrics of the API (``GET /metrics``).

With several API processes (``uvicorn --workers N``), set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty folder shared by them: every process then writes its samples there and any of them
answers the scrape with the sum of all, which is prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        # Own registry per app: tests build many apps in one process.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mnist_http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "mnist_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "mnist_predictions", "Predictions answered, by predicted digit.", ["digit"], registry=r
        )
        self.predictions_by_model = Counter(
            "mnist_model_predictions",
            "Predictions answered, by the model version that made them.",
            ["model_version"],
            registry=r,
        )
        self.prediction_errors = Counter(
            "mnist_prediction_errors",
            "Images the worker could not answer, by error code.",
            ["code"],
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "mnist_job_queue_wait_seconds",
            "Time a task waited in the queue.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "mnist_job_inference_seconds",
            "Time a worker spent on a task (decode + predict).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "mnist_job_end_to_end_seconds",
            "From sending a task to its result in the API.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "mnist_task_batch_size",
            "Images per task sent to the workers.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "mnist_rejected_jobs",
            "Jobs refused before queueing, by reason.",
            ["reason"],
            registry=r,
        )
        self.requeued = Counter(
            "mnist_tasks_requeued",
            "Task messages found lost between Redis and a worker and queued again.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "mnist_queue_depth",
            "Tasks waiting in Redis (read at scrape time).",
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.workers = Gauge(
            "mnist_workers",
            "Worker processes with a live heartbeat (read at scrape time).",
            multiprocess_mode="mostrecent",
            registry=r,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def observe_task(self, meta: dict[str, Any], seconds_since_sent: float, images: int) -> None:
        """Record a finished task's result (called once per task, sync or async)."""
        self.end_to_end_seconds.observe(seconds_since_sent)
        result = meta.get("result")
        if meta.get("status") != "SUCCESS" or not isinstance(result, dict):
            self.prediction_errors.labels("task_failed").inc(images)
            return
        timings = result.get("timings") or {}
        if timings.get("queue_wait_ms") is not None:
            self.queue_wait_seconds.observe(max(0.0, timings["queue_wait_ms"] / 1000))
        if timings.get("inference_ms") is not None:
            self.inference_seconds.observe(timings["inference_ms"] / 1000)
        task_version = str(result.get("model_version", "unknown"))
        for item in result.get("items") or []:
            if item.get("prediction"):
                self.predictions.labels(item["prediction"]["prediction"]).inc()
                self.predictions_by_model.labels(item.get("model_version") or task_version).inc()
            elif item.get("error"):
                self.prediction_errors.labels(item["error"].get("code", "unknown")).inc()

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]  # unannotated upstream
            return generate_latest(merged)
        return generate_latest(self.registry)
