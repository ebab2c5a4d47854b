"""The Celery configuration both sides build."""

from __future__ import annotations

from shared.queue import make_celery
from shared.settings import Settings


def test_task_events_are_off_unless_asked_for() -> None:
    assert make_celery(Settings()).conf.worker_send_task_events is False
    assert make_celery(Settings(task_events=True)).conf.worker_send_task_events is True
    # The API's fast path sends no task-sent event either way.
    assert make_celery(Settings(task_events=True)).conf.task_send_sent_event is False
