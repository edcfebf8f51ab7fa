"""Two orchestrators or two relays at once, on the real database (no broker: publishing is
recorded): a reply is applied once, an outbox row is published once."""
import threading
from collections import Counter

import pytest
from django.db import close_old_connections, connections, transaction

from contracts import Command
from sagas import engine, outbox
from sagas.definitions import PLACE_ORDER
from sagas.models import OutboxMessage, SagaStep
from tests.unit.sagas.saga_harness import place_order_context, relayed

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def run_together(target, count=2):
    """Start `count` threads at the same moment; return what each returned."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def body(i):
        barrier.wait()
        try:
            results[i] = target()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    close_old_connections()
    return results


@pytest.fixture
def published(monkeypatch):
    sent = Counter()
    lock = threading.Lock()

    def record(self, message_id, message_type, body):
        with lock:
            sent[str(message_id)] += 1
        self.sent.append(message_id)

    def confirm_all(self, timeout=None):
        confirmed, self.sent = self.sent, []
        return confirmed, []

    # What the broker is sent, not the broker: these tests are about the database's locks.
    monkeypatch.setattr(outbox.ConfirmedBatch, "send", record)
    monkeypatch.setattr(outbox.ConfirmedBatch, "wait", confirm_all)
    monkeypatch.setattr(outbox, "publish_after_commit", lambda ids: None)
    monkeypatch.setattr(outbox, "publish_committed", lambda rows: None)  # left to the relays
    return sent


def start_saga():
    with transaction.atomic():
        return engine.saga_start(definition=PLACE_ORDER, context=place_order_context(),
                                 correlation_id="concurrency")


def test_two_orchestrators_applying_the_same_reply_apply_it_once(published):
    saga = start_saga()
    command = Command.from_dict(OutboxMessage.objects.get(saga_id=saga.id).body)
    reply = command.succeed(reservation_id=1)

    outcomes = run_together(lambda: engine.reply_apply(reply), count=4)

    assert sorted(outcomes) == ["applied", "stale", "stale", "stale"]
    assert SagaStep.objects.get(saga=saga, name="authorize").attempts == 1
    assert OutboxMessage.objects.filter(saga_id=saga.id, message_type="payments.authorize").count() == 1


def test_two_relays_publish_every_row_exactly_once(published):
    sagas = [start_saga() for _ in range(30)]

    counts = run_together(lambda: outbox.relay(), count=3)

    assert sum(counts) == len(sagas)
    assert len(published) == len(sagas) and set(published.values()) == {1}
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()


def test_two_deadline_sweepers_resend_a_command_once(published):
    from datetime import timedelta

    saga = start_saga()
    step = SagaStep.objects.get(saga=saga, name="reserve_stock")
    later = step.deadline_at + timedelta(milliseconds=1)

    relayed()
    handled = run_together(lambda: engine.deadlines_sweep(now=later), count=3)

    assert sum(handled) == 1
    assert SagaStep.objects.get(pk=step.pk).resends == 1


def test_a_published_mark_does_not_wait_for_its_own_wal_flush(published):
    """The mark is the only thing a lost flush could lose, and the relay would then publish the row
    again (harmless): its transaction commits with synchronous_commit off, and nothing else's does."""
    from django.test.utils import CaptureQueriesContext

    saga = start_saga()
    row = OutboxMessage.objects.get(saga_id=saga.id)
    connection = connections["default"]
    with CaptureQueriesContext(connection) as queries:
        assert outbox._publish_rows([(row.id, row.message_type, row.body)], publisher="after_commit") == 1
    sql = [query["sql"] for query in queries.captured_queries]
    setting = next(i for i, statement in enumerate(sql) if "synchronous_commit" in statement)
    update = next(i for i, statement in enumerate(sql) if statement.startswith("UPDATE") and "published_at" in statement)
    assert setting < update and "SET LOCAL" in sql[setting]
    assert OutboxMessage.objects.get(id=row.id).published_at is not None
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # LOCAL: the connection's next transaction fsyncs as before
