"""Debian's real Prometheus scrapes a live stack with the shipped configuration and rules."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from bench.procs import Proc, free_port, wait_until
from tests.images import png
from tests.integration.conftest import Stack

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        PROMETHEUS is None and not os.environ.get("REQUIRE_PROMTOOL"),
        reason="prometheus not installed (Debian: apt-get install prometheus)",
    ),
]


def _value(api: str, query: str) -> float | None:
    try:
        body = httpx.get(api + "/query", params={"query": query}, timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    result = body.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_api_and_loads_the_rules(
    stack: Stack, digits: list[np.ndarray], tmp_path: Path
) -> None:
    assert PROMETHEUS is not None, "REQUIRE_PROMTOOL is set but prometheus is missing"
    stack.worker("prometheus")
    _, base = stack.api()
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "alerts.yml")]
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [base.removeprefix("http://")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        PROMETHEUS,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    stack.processes.append(
        Proc("prometheus", args, dict(os.environ), tmp_path / "prometheus.log").start()
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    wait_until(lambda: (_value(api, "mnist_workers") or 0) >= 1, 60, "a scrape of mnist_workers")
    groups = httpx.get(api + "/rules", timeout=5).json()["data"]["groups"]
    assert {group["name"] for group in groups} == {"mnist-recording", "mnist-alerts"}

    def rules_evaluated() -> bool:  # "unknown" until their first evaluation
        groups = httpx.get(api + "/rules", timeout=5).json()["data"]["groups"]
        health = {rule["health"] for group in groups for rule in group["rules"]}
        assert "err" not in health, groups
        return health == {"ok"}

    wait_until(rules_evaluated, 30, "every rule to evaluate")

    answer = httpx.post(
        base + "/predict/mnist", files={"file": ("7.png", png(digits[7]))}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["prediction"] == "7"
    wait_until(
        lambda: (_value(api, 'sum(mnist_predictions_total{digit="7"})') or 0) >= 1,
        30,
        "the prediction to reach Prometheus",
    )
