"""Health, readiness, model metadata and metrics (embedded mode, and with Redis down)."""

from __future__ import annotations

import json
import time

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from shared.normalize import INK_GAMMA
from shared.queue import WORKER_KEY_PREFIX, WORKERS_KEY
from shared.settings import Settings
from tests.images import png


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exposition parsed into {(sample name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    (process,) = body["workers"]
    assert process.startswith("embedded/")  # hostname/pid: one entry per worker process
    assert body["processes"] == 1
    assert body["nodes"] == ["embedded"]
    assert len(body["model_version"]) == 12
    assert body["model_versions"] == [body["model_version"]]


def test_model_metadata(client: TestClient) -> None:
    info = client.get("/model").json()
    assert info["pipeline"].endswith("SGDClassifier")
    assert info["classes"] == [str(d) for d in range(10)]
    assert 0.8 < info["test_accuracy"] <= 1.0
    assert info["sha256"].startswith(info["version"])
    assert info["ink_gamma"] == INK_GAMMA  # how the served model reads uploads
    assert [w.split("/")[0] for w in info["workers"]] == ["embedded"]
    (served,) = info["versions"]
    assert served["version"] == info["version"]
    assert served["workers"] == info["workers"]
    assert served["canary_percent"] is None


def test_a_rollout_shows_both_versions(client: TestClient) -> None:
    """Two processes on different versions, one with a canary: /ready and /model list all."""
    redis = client.app.state.workers.redis  # type: ignore[attr-defined]
    meta = {"trained_at": "2026-01-01T00:00:00+00:00", "test_accuracy": 0.99, "ink_gamma": 0.7}
    records = {
        "n@h/1": {
            "process": "n@h/1",
            "hostname": "n@h",
            "model_version": "aaaaaaaaaaaa",
            "model": meta,
            "canary": None,
        },
        "n@h/2": {
            "process": "n@h/2",
            "hostname": "n@h",
            "model_version": "aaaaaaaaaaaa",
            "model": meta,
            "canary": {
                "version": "cccccccccccc",
                "percent": 10,
                "model": {**meta, "ink_gamma": 1.0},  # a canary that reads uploads unlifted
            },
        },
        "m@h/3": {
            "process": "m@h/3",
            "hostname": "m@h",
            "model_version": "bbbbbbbbbbbb",
            "model": meta,
            "canary": None,
        },
    }

    async def publish() -> None:
        await redis.delete(WORKERS_KEY)
        for name, record in records.items():
            await redis.set(WORKER_KEY_PREFIX + name, json.dumps(record))
            await redis.sadd(WORKERS_KEY, name)

    client.portal.call(publish)  # type: ignore[union-attr]
    client.app.state.readiness.answer = None  # type: ignore[attr-defined]
    ready = client.get("/ready").json()
    assert ready["processes"] == 3
    assert ready["nodes"] == ["m@h", "n@h"]
    assert ready["model_versions"] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]
    info = client.get("/model").json()
    assert info["version"] == "aaaaaaaaaaaa"  # the one most processes serve
    assert info["workers"] == ["n@h/1", "n@h/2"]
    by_version = {v["version"]: v for v in info["versions"]}
    assert by_version["bbbbbbbbbbbb"]["workers"] == ["m@h/3"]
    assert by_version["cccccccccccc"]["canary_percent"] == 10
    assert by_version["cccccccccccc"]["workers"] == ["n@h/2"]
    assert by_version["cccccccccccc"]["ink_gamma"] == 1.0
    assert by_version["aaaaaaaaaaaa"]["ink_gamma"] == info["ink_gamma"] == 0.7


def test_metrics_move_with_predictions(client: TestClient, digits: list[np.ndarray]) -> None:
    before = samples(client)
    for digit in (0, 1, 1, 7):
        assert (
            client.post("/predict/mnist", files={"file": ("d.png", png(digits[digit]))}).status_code
            == 200
        )
    assert client.post("/predict/mnist", files={"file": ("d.png", b"nope")}).status_code == 400
    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = {"method": "POST", "route": "/predict/mnist"}
    assert delta("mnist_http_requests_total", status="200", **route) == 4
    assert delta("mnist_http_requests_total", status="400", **route) == 1
    assert delta("mnist_http_request_duration_seconds_count", **route) == 5
    assert delta("mnist_predictions_total", digit="1") == 2
    version = client.get("/model").json()["version"]
    assert delta("mnist_model_predictions_total", model_version=version) == 4
    assert sum(delta("mnist_predictions_total", digit=str(d)) for d in range(10)) == 4
    assert delta("mnist_task_batch_size_count") == 4
    assert delta("mnist_job_inference_seconds_count") == 4
    assert delta("mnist_job_end_to_end_seconds_count") == 4
    assert after[("mnist_workers", ())] == 1
    assert after[("mnist_queue_depth", ())] == 0


def test_probes_when_redis_is_down() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", redis_timeout_seconds=0.3)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        started = time.monotonic()
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "Redis" in ready.json()["detail"]
        assert time.monotonic() - started < 1.5
        assert client.get("/model").status_code == 503
        assert client.get("/metrics").status_code == 200  # scraping never breaks


def test_metrics_label_the_docs_schema_and_static_files_by_their_route(
    client: TestClient,
) -> None:
    for path in ("/docs", "/openapi.json", "/static/app.js", "/no-such-page"):
        client.get(path)
    routes = {
        sample.labels["route"]
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if sample.name == "mnist_http_requests_total"
    }
    assert {"/docs", "/openapi.json", "/static", "unmatched"} <= routes
