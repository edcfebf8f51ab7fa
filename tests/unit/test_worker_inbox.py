"""The worker's inbox (workers/messaging.py `handle`): one effect per message id, whatever arrives."""

import pytest

from contracts import Command
from tests.unit.inventory_commands import available, reserve_command
from workers import messaging
from workers.inventory import handlers  # noqa: F401  (registers the inventory handlers)
from workers.inventory.models import Inbox, Reservation, StockItem

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def stock():
    return StockItem.objects.using("inventory").create(sku="INBOX-1", available=5)


def test_a_command_handled_twice_has_one_effect_and_the_same_reply(stock):
    command = reserve_command()
    first = messaging.handle(command)
    again = messaging.handle(Command.from_dict(command.to_dict()))
    assert first.outcome == "succeeded" and again.to_dict() == first.to_dict()
    assert available() == 3
    assert Reservation.objects.using("inventory").filter(saga_id=command.saga_id).count() == 1
    assert Inbox.objects.using("inventory").get(message_id=command.message_id).reply == first.to_dict()


def test_a_rejection_is_recorded_and_undoes_what_the_handler_wrote(stock):
    command = reserve_command(items=[{"sku": "INBOX-1", "quantity": 9}])
    reply = messaging.handle(command)
    assert reply.outcome == "failed" and reply.reason == "out_of_stock"
    assert available() == 5
    assert Inbox.objects.using("inventory").get(message_id=command.message_id).reply == reply.to_dict()
    assert messaging.handle(command).to_dict() == reply.to_dict()


def test_a_copy_committed_between_our_snapshot_and_our_lock_is_answered_from_the_inbox(stock, monkeypatch):
    """The claim reads the inbox in the statement that takes the lock; a copy that committed just
    before the lock is invisible to that statement. Its inbox row then refuses ours, everything is
    rolled back, and the second look answers from the inbox: still one effect."""
    command = reserve_command()
    first = messaging.handle(command)
    claim = messaging._claim
    calls = []

    def stale_claim(database, inbox_model, message_id):
        calls.append(message_id)
        taken, seen, stored = claim(database, inbox_model, message_id)
        return (taken, False, None) if len(calls) == 1 else (taken, seen, stored)

    monkeypatch.setattr(messaging, "_claim", stale_claim)
    again = messaging.handle(Command.from_dict(command.to_dict()))
    assert len(calls) == 2
    assert again.to_dict() == first.to_dict()
    assert available() == 3
    assert Reservation.objects.using("inventory").filter(saga_id=command.saga_id).count() == 1


def test_a_retry_that_cannot_be_published_goes_back_to_its_queue_not_to_the_dead_letters(monkeypatch):
    """Celery rejects the message in hand without requeueing (to the dead-letter queue) when it
    cannot publish its retry, as when the broker node it publishes to is killed."""
    from collections import Counter

    from celery.canvas import Signature
    from celery.exceptions import Reject
    from django.db import OperationalError

    from orderhub.celery import app

    def broker_gone(self, *args, **kwargs):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(Signature, "apply_async", broker_gone)
    command = reserve_command()
    app.loader.import_default_modules()  # as a worker does when it starts
    task = app.tasks["inventory.reserve"]
    task.push_request(id=command.message_id, retries=0, called_directly=False, args=[command.to_dict()], kwargs={},
                      delivery_info={"routing_key": "inventory.reserve"})
    try:
        with pytest.raises(Reject) as rejected:
            messaging._retry(task, command, OperationalError("database unreachable"), Counter(), "infrastructure",
                             messaging.infrastructure_policy())
    finally:
        task.pop_request()

    assert rejected.value.requeue is True
