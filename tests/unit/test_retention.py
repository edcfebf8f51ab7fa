"""Retention (orderhub/retention.py): what outlived its age goes, in batches; what is recent, still
needed (a running saga's events, an archived dead letter) or young stays."""
import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from orderhub import retention
from orderhub.deadletters.models import DeadLetter
from orderhub.orders.models import Order
from sagas.models import OutboxMessage, SagaEvent, SagaInstance
from workers.inventory.models import Inbox as InventoryInbox

pytestmark = pytest.mark.django_db(databases="__all__")
LONG_AGO = timezone.now() - timedelta(days=400)


def outbox_row(published_at):
    row = OutboxMessage.objects.create(id=uuid.uuid4(), message_type="inventory.reserve", saga_id=uuid.uuid4(),
                                       body={})
    OutboxMessage.objects.filter(id=row.id).update(published_at=published_at)
    return row.id


def saga_with_events(ended_at):
    saga = SagaInstance.objects.create(saga_type="place_order", correlation_id=str(uuid.uuid4()), ended_at=ended_at,
                                       status="completed" if ended_at else "running")
    SagaEvent.objects.bulk_create(SagaEvent(saga=saga, kind="status", body={}) for _ in range(3))
    return saga


def letter(status, last_seen):
    dead = DeadLetter.objects.create(message_key=str(uuid.uuid4()), queue="payments.commands", reason="r", body="[]",
                                     status=status)
    DeadLetter.objects.filter(id=dead.id).update(last_seen=last_seen)
    return dead.id


def inbox_row(received_at):
    row = InventoryInbox.objects.create(message_id=uuid.uuid4(), message_type="inventory.reserve",
                                        saga_id=uuid.uuid4(), reply={})
    InventoryInbox.objects.filter(message_id=row.message_id).update(received_at=received_at)
    return row.message_id


def test_what_outlived_its_retention_goes_and_the_rest_stays(django_user_model):
    old_outbox, new_outbox, unpublished = outbox_row(LONG_AGO), outbox_row(timezone.now()), outbox_row(None)
    OutboxMessage.objects.filter(id=unpublished).update(created_at=LONG_AGO)
    ended, recent, running = saga_with_events(LONG_AGO), saga_with_events(timezone.now()), saga_with_events(None)
    replayed, discarded = letter("replayed", LONG_AGO), letter("discarded", LONG_AGO)
    archived, fresh = letter("archived", LONG_AGO), letter("replayed", timezone.now())
    old_inbox, new_inbox = inbox_row(LONG_AGO), inbox_row(timezone.now())
    client = django_user_model.objects.create(username="retention-client")
    old_order = Order.objects.create(client=client, total="1.00", payment_token="tok_ok", shipping_address={},
                                     idempotency_key="k-old", request_fingerprint="f")
    Order.objects.filter(id=old_order.id).update(created_at=LONG_AGO)
    new_order = Order.objects.create(client=client, total="1.00", payment_token="tok_ok", shipping_address={},
                                     idempotency_key="k-new", request_fingerprint="f")

    dry = retention.purge(dry_run=True)
    assert dry["outbox"] >= 1 and OutboxMessage.objects.filter(id=old_outbox).exists()  # a dry run changes nothing

    done = retention.purge(batch=2)  # small batches: every kind needs several

    assert not OutboxMessage.objects.filter(id=old_outbox).exists()
    assert OutboxMessage.objects.filter(id__in=[new_outbox, unpublished]).count() == 2
    assert not SagaEvent.objects.filter(saga=ended).exists() and SagaInstance.objects.filter(id=ended.id).exists()
    assert SagaEvent.objects.filter(saga__in=[recent, running]).count() == 6
    assert not DeadLetter.objects.filter(id__in=[replayed, discarded]).exists()
    assert DeadLetter.objects.filter(id__in=[archived, fresh]).count() == 2
    assert not InventoryInbox.objects.filter(message_id=old_inbox).exists()
    assert InventoryInbox.objects.filter(message_id=new_inbox).exists()
    assert Order.objects.get(id=old_order.id).idempotency_key is None
    assert Order.objects.get(id=new_order.id).idempotency_key == "k-new"
    assert done["saga_events"] >= 3 and done["dead_letters"] >= 2 and done["idempotency_keys"] >= 1

    out = io.StringIO()
    call_command("purge", "--dry-run", stdout=out)
    assert "would purge" in out.getvalue() and "inventory_inbox" in out.getvalue()


def test_a_run_stops_at_its_budget_and_the_next_carries_on():
    ids = [outbox_row(LONG_AGO) for _ in range(5)]
    first = retention.purge(batch=2, budget=0)  # no time at all: nothing done, nothing broken
    assert first["outbox"] == 0 and OutboxMessage.objects.filter(id__in=ids).count() == 5
    retention.purge(batch=2)
    assert not OutboxMessage.objects.filter(id__in=ids).exists()
