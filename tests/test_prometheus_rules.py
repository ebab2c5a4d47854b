"""The alerting rules in deploy/prometheus/ pass their own unit tests under promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("REQUIRE_PROMTOOL"),
    reason="promtool not installed (Debian: apt-get install prometheus)",
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "REQUIRE_PROMTOOL is set but promtool is missing"
    return subprocess.run(
        [PROMTOOL, *args], cwd=FOLDER, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_the_scrape_config_and_its_rules_are_valid() -> None:
    done = _promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_promtool
def test_every_alert_passes_its_unit_tests() -> None:
    done = _promtool("test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test_and_a_readme_row() -> None:
    rules = (FOLDER / "alerts.yml").read_text()
    tests = (FOLDER / "alerts.test.yml").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert len(alerts) == 6
    readme = (FOLDER.parents[1] / "README.md").read_text()
    for name in alerts:
        assert f"alertname: {name}" in tests, f"{name} has no test"
        assert f"| `{name}` |" in readme, f"{name} is not in the README's table of alerts"
