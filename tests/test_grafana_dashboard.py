"""The Grafana dashboard only queries series that exist: our metrics or our recording rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _recorded() -> set[str]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def _exported() -> set[str]:
    from api.metrics import Metrics

    return {family.name for family in Metrics().registry.collect()}


def test_every_panel_queries_a_known_series() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "mnist.json").read_text())
    known = _recorded() | _exported()
    titles = set()
    for panel in dashboard["panels"]:
        titles.add(panel["title"])
        for target in panel["targets"]:
            names = set(re.findall(r"\b(mnist[:_][a-z0-9_:]+)", target["expr"]))
            assert names, target["expr"]
            for name in names:
                base = re.sub(r"_(total|bucket|sum|count)$", "", name)
                assert name in known or base in known, f"{panel['title']}: {name} is not exported"
    for wanted in ("Queue depth", "Predictions by model version", "Worker processes"):
        assert wanted in titles
