"""GET /metrics (orderhub/metrics.py) against the real databases, Redis and RabbitMQ."""
import re
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from orderhub import counters, health
from orderhub.deadletters.models import DeadLetter
from orderhub.orders.admission import REFUSED_KEY
from sagas.models import OutboxMessage, SagaInstance

pytestmark = pytest.mark.django_db(databases="__all__")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")


def scrape(client, **headers):
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_the_system_is_read_at_scrape_time_with_bounded_labels(client):
    from orderhub import topology
    from orderhub.celery import app
    from tests.unit.console.test_actions import parked_order

    with app.connection_for_write() as connection:  # on a fresh broker, before any process has
        topology.declare(connection)
    parked_order()
    row = OutboxMessage.objects.create(id=uuid.uuid4(), message_type="inventory.reserve", saga_id=uuid.uuid4(),
                                       body={})
    OutboxMessage.objects.filter(id=row.id).update(created_at=timezone.now() - timedelta(seconds=45))
    DeadLetter.objects.create(message_key="k1", queue="payments.commands", reason="r", body="[]")
    DeadLetter.objects.create(message_key="k2", queue="forged-" + uuid.uuid4().hex, reason="r", body="[]")
    health.note_tick()
    before = counters.read(REFUSED_KEY)
    counters.count(REFUSED_KEY)

    samples = scrape(client)

    assert value(samples, "orderhub_orders", status="needs_attention", failure_reason="payment_declined") == 1
    assert value(samples, "orderhub_sagas", saga_type="place_order", status="compensation_failed") == 1
    assert value(samples, "orderhub_outbox_oldest_unpublished_age_seconds") >= 45
    assert value(samples, "orderhub_outbox_unpublished") >= 1
    assert value(samples, "orderhub_beat_last_tick_age_seconds") < 5
    assert value(samples, "orderhub_queue_consumers", queue="payments.commands") is not None
    assert value(samples, "orderhub_queue_messages_ready", queue="payments.commands.dlq") is not None
    assert value(samples, "orderhub_dead_letters", queue="payments.commands", status="archived") == 1
    assert value(samples, "orderhub_dead_letters", queue="other", status="archived") == 1
    assert value(samples, "orderhub_admission_refused_total") == before + 1
    assert value(samples, "orderhub_admission_target_seconds") == settings.ADMISSION_TARGET_SECONDS
    assert value(samples, "orderhub_admission_in_flight") == SagaInstance.objects.filter(
        status__in=("running", "compensating")).count()
    assert value(samples, "orderhub_admission_drain_rate") is not None
    assert value(samples, "orderhub_admission_stalled") in (0, 1)
    assert not [key for key in samples if key[0] == "orderhub_scrape_errors"]
    for name, labels in samples:
        assert not any(UUID.match(str(v)) or str(v).startswith("forged-") for _, v in labels), (name, labels)


def test_a_part_that_cannot_be_read_is_counted_and_the_rest_served(client, monkeypatch):
    from orderhub import metrics

    def down():
        raise ConnectionError("management API down")
        yield

    monkeypatch.setattr(metrics, "_queues", down)
    samples = scrape(client)
    assert value(samples, "orderhub_scrape_errors", part="queues") == 1
    assert value(samples, "orderhub_outbox_unpublished") is not None


def test_a_metrics_token_when_set_is_required(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert scrape(client, HTTP_AUTHORIZATION="Bearer s3cret")
