"""The health endpoints (orderhub/health.py) against the real databases, broker and Redis."""
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from orderhub import health
from sagas.models import OutboxMessage

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture(autouse=True)
def fresh_reading():
    health.forget()  # each test reads anew (one reading serves a process for a second)
    yield
    health.forget()


@pytest.fixture
def client(client, settings):
    """A caller allowed the details: the health token."""
    settings.HEALTH_TOKEN = "health-test-token"
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer health-test-token"
    return client


@pytest.fixture
def archiver_consuming(monkeypatch):
    """As if the archiver consumed every DLQ (whether one runs depends on the test session)."""
    monkeypatch.setitem(health.SYSTEM, "dlq_consumers", lambda: {"payments.commands.dlq": 1})


def test_liveness_asks_no_dependency(client, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "database", lambda: (_ for _ in ()).throw(RuntimeError("down")))
    assert client.get("/health/live/").json() == {"status": "alive"}


def test_readiness_is_ok_with_a_fresh_tick_and_no_lag(client, archiver_consuming):
    health.note_tick()
    answer = client.get("/health/ready/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "ok" and body["warnings"] == []
    assert body["checks"] == {"database": "ok", "broker": "ok", "cache": "ok"}
    assert body["system"]["beat_last_tick_age_s"] < 5 and body["system"]["outbox_oldest_unpublished_age_s"] == 0


def test_a_silent_beat_and_a_lagging_outbox_are_warnings_not_failures(client, archiver_consuming, monkeypatch):
    # The probes' readings are given: a live beat and relay (the integration suite's, running in
    # the same session) would tick and publish under the test's feet. They are tested below.
    monkeypatch.setitem(health.SYSTEM, "beat_last_tick_age_s", lambda: 60.0)
    monkeypatch.setitem(health.SYSTEM, "outbox_oldest_unpublished_age_s", lambda: 90.0)

    answer = client.get("/health/")
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "warning"
    assert "beat: silent for 60 s" in body["warnings"], body
    assert "outbox: a row has waited 90 s to be published" in body["warnings"], body


def test_the_probes_read_beats_tick_and_the_outboxs_oldest_unpublished_row(monkeypatch):
    from django.core.cache import cache

    monkeypatch.setattr(health, "LAST_TICK_KEY", f"beat:last_tick:test-{uuid.uuid4()}")  # no live beat writes it
    cache.set(health.LAST_TICK_KEY, time.time() - 60, timeout=None)
    assert 59 <= health._beat_last_tick_age() < 70
    # Uncommitted (the test's transaction): visible here, never to a relay running meanwhile.
    row = OutboxMessage.objects.create(id=uuid.uuid4(), message_type="inventory.reserve", saga_id=uuid.uuid4(),
                                       body={})
    OutboxMessage.objects.filter(id=row.id).update(created_at=timezone.now() - timedelta(seconds=90))
    assert health._outbox_lag() >= 90


def test_an_idle_dead_letter_queue_names_the_archiver(client, monkeypatch):
    health.note_tick()
    monkeypatch.setitem(health.SYSTEM, "dlq_consumers", lambda: {"payments.commands.dlq": 0, "saga.replies.dlq": 1})
    assert "archiver: nobody consumes payments.commands.dlq" in client.get("/health/").json()["warnings"]


def test_the_dead_letter_queues_are_read_from_rabbitmq():
    consumers = health._dlq_consumers()
    assert "payments.commands.dlq" in consumers and all(isinstance(n, int) for n in consumers.values())


def test_an_anonymous_caller_sees_up_or_down_the_token_the_details_and_staff_the_text(client, monkeypatch,
                                                                                       archiver_consuming):
    from django.test import Client

    def leaky():
        raise RuntimeError("could not connect to db.internal:5432 as user orderhub_admin")

    monkeypatch.setitem(health.CHECKS, "cache", leaky)
    anonymous = Client().get("/health/")
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "down"}
    wrong_token = Client(HTTP_AUTHORIZATION="Bearer not-the-token").get("/health/")
    assert wrong_token.json() == {"status": "down"}

    with_token = client.get("/health/")
    assert with_token.status_code == 503 and with_token.json()["checks"]["cache"] == "error: RuntimeError"
    assert b"db.internal" not in with_token.content and b"orderhub_admin" not in with_token.content

    staff = Client()
    staff.force_login(User.objects.create(username="ops", is_staff=True))
    assert "db.internal" in staff.get("/health/").json()["checks"]["cache"]


def test_one_reading_serves_every_caller_for_a_second(client, monkeypatch, archiver_consuming):
    rounds = []
    monkeypatch.setitem(health.CHECKS, "cache", lambda: rounds.append(time.monotonic()))
    for _ in range(20):
        assert client.get("/health/").status_code == 200
    assert len(rounds) == 1
    taken, reading = health._reading
    health._reading = (taken - health.CACHE_SECONDS - 0.01, reading)  # a second later
    client.get("/health/")
    assert len(rounds) == 2
