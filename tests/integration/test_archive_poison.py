"""Poison for the archiver itself: bodies and headers PostgreSQL cannot store as text, and a message
the archive refuses outright. None of them may jam the archive or vanish."""
import base64
import json
import uuid

import pytest
from kombu import Connection, Queue

from orderhub import rabbitmq_api, topology
from orderhub.celery import app
from orderhub.deadletters.models import DeadLetter
from orderhub.deadletters.reasons import parked_count
from tests.conftest import eventually
from tests.support.faults import BUG, failing_writes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

PREFETCH = 10  # the archiver's prefetch: this many stuck messages would stop it


def publish_raw(producer, body, *, key, **options):
    producer.publish(body, exchange=topology.EXCHANGE.name, routing_key="inventory.reserve", message_id=key,
                     content_type="application/json", retry=True, **options)


def test_bodies_with_nul_bytes_and_unclean_headers_are_archived_as_base64_and_nothing_jams(live):
    order = json.dumps({"items": [{"sku": "SKU-MUG", "quantity": 1}]})
    bodies = {str(uuid.uuid4()): order.encode(encoding) for encoding in ["utf-16-le", "utf-16"] * (PREFETCH // 2 + 1)}
    clean = str(uuid.uuid4())
    with Connection(app.conf.broker_url, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for key, body in bodies.items():
            publish_raw(producer, body, key=key, content_encoding="utf-8", headers={"note": "nul\x00inside"})
        publish_raw(producer, b"{not json", key=clean, content_encoding="utf-8")

    letters = wait_archived([*bodies, clean], timeout=30)

    for key, body in bodies.items():
        letter = letters[key]
        assert letter.body_base64 and base64.b64decode(letter.body) == body
        assert letter.queue == "inventory.commands"
        assert "\x00" not in json.dumps(letter.headers) and letter.headers["note"] == "nul\ufffdinside"
    assert not letters[clean].body_base64 and letters[clean].body == "{not json"


def test_a_dead_letter_the_archive_refuses_is_parked_and_counted_and_the_rest_are_archived(live):
    refused, after = str(uuid.uuid4()), str(uuid.uuid4())
    parked_before = parked_count()
    with failing_writes("default", "dead_letter", when=f"NEW.message_key = '{refused}'", sqlstate=BUG):
        with Connection(app.conf.broker_url, transport_options={"confirm_publish": True}) as connection:
            producer = connection.Producer()
            publish_raw(producer, b"{refused", key=refused, content_encoding="utf-8")
            publish_raw(producer, b"{after", key=after, content_encoding="utf-8")
        eventually(lambda: archived(after), timeout=20, message="the next dead letter archived")
        parked = eventually(lambda: get_parked(), timeout=10, message="the refused message in the parking queue")

    assert parked.headers.get("id") is None and parked.properties.get("message_id") == refused
    raw = parked.body if isinstance(parked.body, bytes) else parked.body.encode("utf-8")
    assert raw == b"{refused" and parked.headers["x-parked-from"] == "inventory.commands.dlq"
    assert parked_count() == parked_before + 1
    assert not DeadLetter.objects.filter(message_key=refused).exists()


def wait_archived(keys, timeout):
    """Every key archived; when they are not, the failure says where the rest are (this test once
    saw some of its messages handled 31 s late and others not at all)."""
    try:
        return eventually(lambda: archived(*keys), timeout=timeout, message="every poison message archived")
    except pytest.fail.Exception:
        done = set(DeadLetter.objects.filter(message_key__in=keys).values_list("message_key", flat=True))
        queues = rabbitmq_api.get(f"queues/{rabbitmq_api.vhost_path()}?columns=name,messages_ready,"
                                  "messages_unacknowledged,consumers", timeout=10).json()
        consumers = rabbitmq_api.get(f"consumers/{rabbitmq_api.vhost_path()}", timeout=10).json()
        pytest.fail(f"{len(done)} of {len(keys)} archived after {timeout}s; missing {sorted(set(keys) - done)[:3]}; "
                    f"queues {[q for q in queues if q['name'].startswith('inventory.')]}; consumers of "
                    f"inventory.commands: {[c.get('channel_details', {}).get('connection_name') for c in consumers if c['queue']['name'] == 'inventory.commands']}")


def archived(*keys):
    letters = {letter.message_key: letter for letter in DeadLetter.objects.filter(message_key__in=keys)}
    return letters if len(letters) == len(keys) else None


def get_parked():
    with Connection(app.conf.broker_url, transport_options={"confirm_publish": True}) as connection:
        channel = connection.channel()
        message = Queue(topology.PARKING_QUEUE, no_declare=True)(channel).get(no_ack=True)
        channel.close()
        return message
