"""Security properties read from the configuration and the files themselves.

The model's integrity check (loaded only after its sha256 matches its metadata) is tested
in ``tests/shared/test_model.py::test_a_tampered_model_is_refused``.
"""

from __future__ import annotations

import re

import pytest

from shared.queue import make_celery
from shared.settings import Settings, redacted_url
from tests.conftest import REPO


@pytest.mark.parametrize("dockerfile", ["Dockerfile.api", "Dockerfile.worker"])
def test_containers_run_as_a_non_root_user(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text()
    assert re.search(r"useradd --uid 10001\b[^\n]*\bapp\b", text)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] == "app"  # the last USER wins: no switch back to root
    assert text.rindex("USER app") > max(text.rindex("\nRUN "), text.rindex("\nCOPY "))


def test_compose_does_not_override_the_user() -> None:
    for name in ("docker-compose.yml", "docker-compose.test.yml"):
        text = (REPO / name).read_text()
        assert not re.search(r"^\s+user:", text, re.MULTILINE), name
        assert "privileged" not in text


def test_celery_accepts_json_only() -> None:
    conf = make_celery(Settings()).conf
    assert conf.accept_content == ["json"]
    assert conf.result_accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"


def test_the_redis_password_is_masked_wherever_settings_are_shown() -> None:
    url = "redis://:secret-pass@127.0.0.1:6379/0"
    assert redacted_url(url) == "redis://:***@127.0.0.1:6379/0"
    assert redacted_url("redis://user:pw@[::1]:7000/2") == "redis://user:***@[::1]:7000/2"
    assert redacted_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert "secret-pass" not in repr(Settings(redis_url=url))
