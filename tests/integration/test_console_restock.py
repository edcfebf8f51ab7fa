"""A restock from the console reaches the inventory worker through the outbox and RabbitMQ, and is
applied once however often it arrives."""
import io
import uuid

import pytest
from django.core.management import call_command

from contracts import Command
from orderhub.bus import publish
from orderhub.console import actions
from orderhub.deadletters.models import DeadLetter
from sagas.models import OutboxMessage
from tests.conftest import eventually
from tests.integration.helpers import product, stock
from tests.support.faults import failing_writes
from workers.inventory.models import Inbox, StockAdjustment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


def test_a_restock_is_applied_once_by_the_real_inventory_worker(live):
    sku = product(stock=3)
    request_id = uuid.uuid4()
    result = actions.restock(actions.Actor("ada", "admin"), sku, 12, "supplier delivery", request_id=request_id)
    assert result.changed
    eventually(lambda: stock(sku) == 15, timeout=15, message="the restock to be applied")

    # The same command again (a relay's second publish, a replay): the inbox answers, no effect.
    row = OutboxMessage.objects.get(id=request_id)
    publish(row.message_type, Command.from_dict(row.body).to_dict(), message_id=str(row.id))
    again = actions.restock(actions.Actor("ada", "admin"), sku, 12, "supplier delivery", request_id=request_id)
    assert not again.changed and again.message.startswith("nothing to do")
    # A second, distinct restock queued behind the copy (one solo worker, a FIFO queue): once it is
    # applied, the copy has been handled before it.
    actions.restock(actions.Actor("ada", "admin"), sku, 1, "one more found")
    eventually(lambda: stock(sku) >= 16, timeout=15, message="the second restock to be applied")
    assert stock(sku) == 16
    assert StockAdjustment.objects.filter(message_id=request_id).count() == 1
    assert Inbox.objects.filter(message_id=request_id).count() == 1


def test_a_restock_the_inventory_database_keeps_refusing_is_dead_lettered_and_applied_once_on_replay(live):
    """A one-way command past its retry budget did not happen (its transaction rolled back): it is
    not answered "unknown" in the inbox (which would make a replay a no-op) but dead-lettered, and
    the replay applies it once."""
    sku = product(stock=3)
    request_id = uuid.uuid4()
    with failing_writes("inventory", "inventory_stock_adjustment"):
        actions.restock(actions.Actor("ada", "admin"), sku, 5, "supplier delivery", request_id=request_id)
        letter = eventually(lambda: DeadLetter.objects.filter(status="archived", message_key=str(request_id)).first(),
                            timeout=30, message="the restock to be dead-lettered")
        assert "infrastructure" in letter.reason and "outcome unknown" in letter.reason
        assert not Inbox.objects.filter(message_id=request_id).exists()
        assert stock(sku) == 3
    # The fault is lifted: the operator replays it.
    call_command("deadletters", "replay", str(letter.id), "--reason", "database back", stdout=io.StringIO())
    eventually(lambda: stock(sku) == 8, timeout=15, message="the replayed restock to be applied")
    assert StockAdjustment.objects.filter(message_id=request_id).count() == 1
    assert Inbox.objects.get(message_id=request_id).reply["outcome"] == "succeeded"
