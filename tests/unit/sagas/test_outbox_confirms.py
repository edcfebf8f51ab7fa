"""The outbox publishes a batch of rows on a confirm-mode channel and waits once for the broker's
confirms (sagas/outbox.py, ConfirmedBatch), against the real RabbitMQ: what the broker confirms is
marked published, what it refuses is left to the relay with the reason, and a connection that went
away between batches is made anew without losing a row."""
import uuid

import pytest
from kombu import Queue

from orderhub.celery import app
from orderhub.topology import EVENTS_EXCHANGE
from sagas import outbox
from sagas.models import OutboxMessage

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def queues():
    """Two queues of this test's own on the events exchange: one takes everything, one is full for
    good (max length 0, reject-publish), so the broker nacks what is routed to it."""
    tag = uuid.uuid4().hex[:10]
    made = {"open": Queue(f"test.confirms.{tag}.open", EVENTS_EXCHANGE, routing_key=f"test.{tag}.open",
                          auto_delete=False, durable=True),
            "full": Queue(f"test.confirms.{tag}.full", EVENTS_EXCHANGE, routing_key=f"test.{tag}.full",
                          durable=True, queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"})}
    with app.connection_for_write() as connection:
        channel = connection.channel()
        EVENTS_EXCHANGE(channel).declare()
        for queue in made.values():
            queue(channel).declare()
    yield made
    with app.connection_for_write() as connection:
        channel = connection.channel()
        for queue in made.values():
            queue(channel).delete()


def waiting(queue) -> int:
    with app.connection_for_write() as connection:
        return connection.channel().queue_declare(queue.name, passive=True).message_count


def rows(routing_key, count):
    made = []
    for _ in range(count):
        row = OutboxMessage.objects.create(id=uuid.uuid4(), message_type="event:test", saga_id=uuid.uuid4(),
                                           body={"type": routing_key, "id": str(uuid.uuid4())})
        made.append((row.id, row.message_type, row.body))
    return made


def test_a_batch_is_published_with_one_wait_and_every_confirmed_row_is_marked(queues):
    batch = rows(queues["open"].routing_key, 25)

    assert outbox._publish_rows(batch, publisher="relay") == 25

    assert waiting(queues["open"]) == 25
    assert not OutboxMessage.objects.filter(id__in=[r[0] for r in batch], published_at__isnull=True).exists()


def test_a_row_the_broker_refuses_is_left_to_the_relay_with_the_reason_and_the_others_are_marked(queues):
    good, refused, more = rows(queues["open"].routing_key, 3), rows(queues["full"].routing_key, 1), \
        rows(queues["open"].routing_key, 3)

    assert outbox._publish_rows(good + refused + more, publisher="relay") == 6

    assert waiting(queues["open"]) == 6
    left = OutboxMessage.objects.get(id=refused[0][0])
    assert left.published_at is None and left.publish_attempts == 1 and "nacked" in left.last_error
    assert OutboxMessage.objects.filter(id__in=[r[0] for r in good + more], published_at__isnull=False).count() == 6


def test_a_connection_closed_between_batches_is_made_anew_and_nothing_is_lost(queues):
    assert outbox._publish_rows(rows(queues["open"].routing_key, 2), publisher="relay") == 2
    # The broker (or a node of it) dropped the thread's connection while it was idle.
    outbox._confirmed_batch().connection.connection.sock.close()

    batch = rows(queues["open"].routing_key, 5)
    assert outbox._publish_rows(batch, publisher="relay") == 5

    assert waiting(queues["open"]) == 7
    assert not OutboxMessage.objects.filter(id__in=[r[0] for r in batch], published_at__isnull=True).exists()
