"""`manage.py healthcheck` (the containers' health checks) against the real broker and Redis."""
import time

import pytest
from django.core.cache import cache
from django.core.management import call_command

from orderhub import health

pytestmark = pytest.mark.django_db(databases="__all__")


def healthy(*args):
    try:
        call_command("healthcheck", *args)
    except SystemExit as exc:
        return exc.code == 0
    return True


def test_beat_is_healthy_while_its_ticks_arrive(monkeypatch):
    import uuid

    monkeypatch.setattr(health, "LAST_TICK_KEY", f"beat:last_tick:test-{uuid.uuid4()}")  # no live beat writes it
    health.note_tick()
    assert healthy("beat")
    cache.set(health.LAST_TICK_KEY, time.time() - 600, timeout=None)
    assert not healthy("beat")


def test_the_archiver_is_unhealthy_when_a_dead_letter_queue_has_no_consumer(monkeypatch):
    monkeypatch.setattr(health, "_dlq_consumers", lambda: {"a.dlq": 1, "b.dlq": 1})
    assert healthy("archiver")
    monkeypatch.setattr(health, "_dlq_consumers", lambda: {"a.dlq": 1, "b.dlq": 0})
    assert not healthy("archiver")


def test_a_worker_nobody_runs_does_not_answer_its_ping():
    assert not healthy("worker", "nobody-runs-this@nowhere", "--timeout", "1")


def test_flower_unreachable_is_unhealthy():
    assert not healthy("flower", "http://127.0.0.1:9", "--timeout", "1")
