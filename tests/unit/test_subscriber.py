"""An event subscriber (orderhub/subscriber.py) against the real broker and database: it takes
what has arrived in batches, applies each in one transaction and acks it after; what it cannot read
is dead-lettered alone; a batch that fails is applied again one event at a time.

The subscriber here consumes a queue of its own, declared as a subscriber's queue is (a quorum
queue dead-lettering into its own DLQ), and the events are published straight to it: in a full
`make test` the integration suite's live projections process is still consuming
projections.sales, and would take the events from under the test."""
import json
import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.db import connections
from kombu import Queue

from orderhub import events, topology
from orderhub.celery import app
from orderhub.reports import projection
from orderhub.reports.consumer import Projector
from tests.conftest import eventually
from orderhub.orders.models import Order, OrderItem
from tests.unit.test_projection import event_of, shop  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def ended(client, status):
    """An order that ended, written as it stands, with no saga behind it: nothing else in the
    system will send an event for it."""
    order = Order.objects.create(client=client, status=status, total=Decimal("15.00"), payment_token="tok_ok",
                                 shipping_address={"country": "GB"}, saga_id=uuid.uuid4())
    OrderItem.objects.create(order=order, sku="P-1", name="P-1", quantity=2, unit_price=Decimal("2.50"))
    OrderItem.objects.create(order=order, sku="P-2", name="P-2", quantity=1, unit_price=Decimal("10.00"))
    return Order.objects.prefetch_related("items").get(id=order.id)


def queue_depth(name):
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(name, passive=True).message_count


QUEUE = f"test.subscriber.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker(monkeypatch):
    monkeypatch.setitem(topology.EVENT_SUBSCRIBERS, QUEUE, ())  # a subscriber's queue, bound to nothing
    with app.connection_for_write() as connection:
        topology.declare(connection)
        channel = connection.default_channel
        topology.subscriber_queue(QUEUE)(channel).declare()
        Queue(topology.dlq_name(QUEUE), topology.DEAD_LETTER_EXCHANGE, routing_key=QUEUE, durable=True,
              queue_arguments={"x-queue-type": "quorum"})(channel).declare()
        for name in (QUEUE, topology.dlq_name(QUEUE)):
            channel.queue_purge(name)
    yield app
    with app.connection_for_write() as connection:
        for name in (QUEUE, topology.dlq_name(QUEUE)):
            connection.default_channel.queue_delete(name)


def publish(body: bytes):
    with app.producer_or_acquire() as producer:
        producer.publish(body, exchange="", routing_key=QUEUE, content_type=events.CONTENT_TYPE,
                         content_encoding="utf-8", delivery_mode=2, message_id=str(uuid.uuid4()))


class Recording(Projector):
    """The projections consumer, noting each batch; its first batch takes a while (so the rest
    has arrived by the time it is done), and it fails every batch that holds `failing`."""

    def __init__(self, connection, failing=None):
        super().__init__(connection)
        self.queue = QUEUE
        self.batches, self.failing = [], failing

    def apply(self, items):
        self.batches.append([item["data"]["order_id"] for item in items])
        if len(self.batches) == 1:
            time.sleep(0.5)
        if self.failing and any(item["data"]["order_id"] == self.failing for item in items) and len(items) > 1:
            raise RuntimeError("a batch that fails as a whole")
        super().apply(items)


def consume(consumer):
    def run():
        try:
            consumer.run()
        finally:
            connections.close_all()  # this thread's, so the test database can be dropped

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stop(consumer, thread):
    consumer.should_stop = True
    thread.join(10)
    assert not thread.is_alive()


def test_events_that_arrived_meanwhile_are_applied_as_one_batch_and_the_unreadable_one_dead_lettered_alone(
        broker, shop):  # noqa: F811
    orders = [ended(shop, "completed") for _ in range(6)]
    publish(json.dumps(event_of(orders[0])).encode())
    publish(b"\xff not json")
    for order in orders[1:]:
        publish(json.dumps(event_of(order)).encode())

    with app.connection_for_read() as connection:
        consumer = Recording(connection)
        thread = consume(consumer)
        try:
            eventually(lambda: sum(map(len, consumer.batches)) == 6 and queue_depth(QUEUE) == 0, timeout=20,
                       message="the six events applied and acked")
            eventually(lambda: queue_depth(topology.dlq_name(QUEUE)) == 1, timeout=10,
                       message="the unreadable one dead-lettered")
        finally:
            stop(consumer, thread)

    assert queue_depth(QUEUE) == 0  # all acked: nothing came back when the consumer went
    assert len(consumer.batches) < 6 and max(map(len, consumer.batches)) >= 2, consumer.batches
    assert [order_id for batch in consumer.batches for order_id in batch] == [str(order.id) for order in orders]
    assert projection.from_projection() == projection.from_orders()
    assert projection.from_projection()["by_outcome"] == {"completed": 6}


def test_a_batch_that_fails_is_applied_again_one_event_at_a_time(broker, shop):  # noqa: F811
    orders = [ended(shop, "completed") for _ in range(4)]
    for order in orders:
        publish(json.dumps(event_of(order)).encode())

    with app.connection_for_read() as connection:
        consumer = Recording(connection, failing=str(orders[2].id))
        thread = consume(consumer)
        try:
            eventually(lambda: queue_depth(QUEUE) == 0 and projection.from_projection()["by_outcome"]
                       .get("completed") == 4, timeout=20, message="all four applied, one at a time after the failure")
        finally:
            stop(consumer, thread)

    assert queue_depth(QUEUE) == 0  # all acked: nothing came back when the consumer went
    assert any(len(batch) > 1 and str(orders[2].id) in batch for batch in consumer.batches), consumer.batches
    assert [str(orders[2].id)] in consumer.batches  # and then alone
    assert projection.from_projection() == projection.from_orders()
