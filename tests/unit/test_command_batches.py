"""A domain worker's batch of commands (workers/messaging.py `handle_batch`): one transaction, one
claim statement, one inbox insert, a savepoint per command; the same answers as one at a time."""
import time
import uuid

import pytest
from django.db import connections

from contracts import Command
from tests.unit.inventory_commands import available as stock_available
from tests.unit.inventory_commands import reserve_command
from workers import messaging
from workers.inventory import handlers  # noqa: F401  (registers the inventory handlers)
from workers.inventory.models import Inbox, Reservation, StockItem

pytestmark = pytest.mark.django_db(databases="__all__", transaction=True)


def reserve(quantity=1):
    return reserve_command(quantity, sku="BATCH-1")


@pytest.fixture
def stock():
    return StockItem.objects.using("inventory").create(sku="BATCH-1", available=10)


def available():
    return stock_available("BATCH-1")


def inbox_transactions(commands):
    with connections["inventory"].cursor() as cursor:
        cursor.execute("SELECT DISTINCT xmin::text FROM inventory_inbox WHERE message_id = ANY(%s::uuid[])",
                       [[c.message_id for c in commands]])
        return {row[0] for row in cursor.fetchall()}


def test_a_batch_is_one_transaction_and_a_rejection_undoes_only_its_own_writes(stock):
    commands = [reserve(2), reserve(2), reserve(50), reserve(3)]
    handled = messaging.handle_batch(commands)

    assert [reply.outcome for reply, _ in handled] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert handled[2][0].reason == "out_of_stock"
    assert available() == 10 - 2 - 2 - 3
    assert len(inbox_transactions(commands)) == 1
    assert Inbox.objects.using("inventory").count() == 4
    for command, (reply, body) in zip(commands, handled):
        assert reply.in_reply_to == command.message_id and body["outcome"] == reply.outcome
        assert Inbox.objects.using("inventory").get(message_id=command.message_id).reply == reply.to_dict()


def test_commands_seen_before_get_their_stored_reply_and_do_nothing_again(stock):
    first = reserve(1)
    [(stored, _)] = messaging.handle_batch([first])
    again = Command.from_dict(first.to_dict())
    handled = messaging.handle_batch([again, reserve(1)])

    assert handled[0][0].to_dict() == stored.to_dict()
    assert handled[1][0].outcome == "succeeded"
    assert available() == 8
    assert Reservation.objects.using("inventory").count() == 2


def test_a_message_another_worker_holds_is_left_to_it(stock):
    held = reserve(1)
    key = int.from_bytes(uuid.UUID(held.message_id).bytes[:8], "big", signed=True)
    other = connections.create_connection("inventory")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        handled = messaging.handle_batch([held, reserve(1)])
    finally:
        other.close()

    assert handled[0] == (None, None)
    assert handled[1][0].outcome == "succeeded"
    assert not Inbox.objects.using("inventory").filter(message_id=held.message_id).exists()


def test_at_most_32_commands_go_in_one_transaction(stock):
    StockItem.objects.using("inventory").filter(sku="BATCH-1").update(available=100)
    commands = [reserve(1) for _ in range(40)]
    first = messaging.handle_batch(commands)
    rest = messaging.handle_batch(commands[len(first):])

    assert len(first) == messaging.SAVEPOINTS_PER_TRANSACTION and len(rest) == 8
    assert len(inbox_transactions(commands)) == 2
    assert available() == 60


def test_an_error_rolls_the_whole_batch_back(stock, monkeypatch):
    original = messaging._HANDLERS["inventory.reserve"]
    doomed = reserve(1)

    def breaks_on_one(command):
        if command.message_id == doomed.message_id:
            raise RuntimeError("a bug")
        return original(command)

    monkeypatch.setitem(messaging._HANDLERS, "inventory.reserve", breaks_on_one)
    with pytest.raises(RuntimeError):
        messaging.handle_batch([reserve(1), doomed, reserve(1)])

    assert available() == 10
    assert not Inbox.objects.using("inventory").exists()
    assert not Reservation.objects.using("inventory").exists()


def test_a_slow_handler_ends_its_transaction_and_the_next_ones_take_one_command(stock, monkeypatch, settings):
    settings.COMMAND_BATCH_SECONDS = 0.05
    monkeypatch.setattr(messaging, "_slow_until", {})
    original = messaging._HANDLERS["inventory.reserve"]
    slow = reserve(1)

    def slow_on_one(command):
        if command.message_id == slow.message_id:
            time.sleep(0.08)  # a slow provider call
        return original(command)

    monkeypatch.setitem(messaging._HANDLERS, "inventory.reserve", slow_on_one)
    commands = [reserve(1), slow, reserve(1), reserve(1)]
    first = messaging.handle_batch(commands)
    second = messaging.handle_batch(commands[2:])

    assert len(first) == 2  # the slow one's transaction commits right after it
    assert len(second) == 1  # and for a while, one command per transaction
    monkeypatch.setattr(messaging, "_slow_until", {})
    assert len(messaging.handle_batch(commands[3:])) == 1
    assert available() == 6


# --- the consumer's sorting and acks (workers/batches.py), on messages as kombu hands them --------
class FakeMessage:
    def __init__(self, command=None, *, task="inventory.reserve", redelivered=False, kwargs=None, headers=None):
        self.body_args = [command.to_dict()] if command is not None else [{"not": "a command"}]
        self.headers = headers if headers is not None else {"task": task, "id": str(uuid.uuid4())}
        self.properties, self.body, self.content_type = {}, b"{}", "application/json"
        self.delivery_info = {"redelivered": redelivered, "routing_key": task, "exchange": "orderhub"}
        self.kwargs = kwargs or {}
        self.settled = None

    def decode(self):
        return self.body_args, self.kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

    def ack(self):
        self.settled = "ack"

    def reject(self, requeue=False):
        self.settled = "requeue" if requeue else "reject"


@pytest.fixture
def consumer(monkeypatch):
    from orderhub.celery import app
    from workers.batches import CommandConsumer
    from workers.inventory import tasks  # noqa: F401  (the command tasks, as a worker has them)

    consumer = CommandConsumer(app, batch=32, queue_name="inventory.commands")
    consumer.batches, consumer.alone = [], []
    monkeypatch.setattr(consumer, "run_batch", lambda items: items and consumer.batches.append(
        [item[-1].message_id for item in items]))
    monkeypatch.setattr(consumer, "run_alone", lambda message, *rest: consumer.alone.append(message))
    return consumer


def test_first_deliveries_go_together_and_redeliveries_retries_and_copies_alone(consumer):
    a, b, c, d = reserve(), reserve(), reserve(), reserve()
    redelivered = FakeMessage(c, redelivered=True)
    retried = FakeMessage(d, kwargs={"retried": {"transient": 1}})
    copy = FakeMessage(a)
    unreadable = FakeMessage(None)
    consumer.handle([FakeMessage(a), FakeMessage(b), copy, redelivered, retried, unreadable, FakeMessage(d)])

    assert consumer.batches == [[a.message_id, b.message_id], [d.message_id]]
    assert consumer.alone == [copy, redelivered, retried, unreadable]


def test_messages_no_task_can_run_are_dead_lettered_with_their_reason(consumer, monkeypatch):
    notes = {}
    monkeypatch.setattr("orderhub.batches.note_reason", lambda key, why: notes.setdefault(key, why))
    unknown = FakeMessage(reserve(), task="inventory.nonsense")
    no_task = FakeMessage(reserve(), headers={"id": str(uuid.uuid4())})
    consumer.handle([unknown, no_task])

    assert (unknown.settled, no_task.settled) == ("reject", "reject")
    assert sorted(notes.values()) == ["malformed: not a task message (no task header)",
                                      "malformed: unknown task 'inventory.nonsense'"]
    assert consumer.batches == [] and consumer.alone == []


def test_a_reply_the_broker_does_not_confirm_sends_its_command_back_to_the_queue(monkeypatch):
    from orderhub import confirms, delivery
    from orderhub.celery import app
    from workers.batches import CommandConsumer

    commands = [reserve(), reserve(), reserve()]
    replies = [command.succeed(reservation_id=1) for command in commands]

    class Broker:
        def send(self, message_id, message_type, body):
            assert message_type == "saga.reply"

        def wait(self):
            return [replies[0].message_id, replies[2].message_id], [(replies[1].message_id, "nacked by the broker")]

    answered = []
    monkeypatch.setattr(confirms, "confirmed_batch", lambda: Broker())
    monkeypatch.setattr(delivery, "answered_many", lambda ids: answered.extend(ids))
    messages = [FakeMessage(command) for command in commands]
    consumer = CommandConsumer(app, batch=32, queue_name="inventory.commands")
    consumer.reply_and_ack([(m, None, None, None, c) for m, c in zip(messages, commands)],
                           [(reply, reply.to_dict()) for reply in replies])

    assert [m.settled for m in messages] == ["ack", "requeue", "ack"]
    # Until its copy comes back, the participant is known to be answering it, as on a retry.
    assert delivery.state(commands[1].message_id) == delivery.RETRYING
    assert sorted(answered) == sorted([commands[0].message_id, commands[2].message_id])


def test_after_a_failed_batch_the_commands_waiting_to_run_alone_stay_queued(monkeypatch):
    """One of them may be slow (a provider call): the others waiting behind it are not silent."""
    from orderhub import delivery
    from orderhub.celery import app
    from workers.batches import CommandConsumer

    def fails(commands, **kwargs):
        raise RuntimeError("a bug in one of them")

    seen = []
    commands = [reserve(), reserve(), reserve()]
    consumer = CommandConsumer(app, batch=32, queue_name="inventory.commands")
    monkeypatch.setattr(messaging, "handle_batch", fails)
    # Held (so the refresher keeps their leases for as long as it takes) and queued.
    monkeypatch.setattr(consumer, "run_alone", lambda message, *rest: seen.append(
        [(str(command.message_id) in delivery._held, delivery.state(command.message_id)) for command in commands]))
    consumer.run_batch([(FakeMessage(c), "inventory.reserve", [c.to_dict()], {}, c) for c in commands])

    assert seen == [[(True, delivery.QUEUED)] * 3] * 3
    assert delivery.in_hand("inventory.commands")
