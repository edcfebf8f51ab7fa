"""Domain workers handle commands in batches (workers/batches.py), through the real processes:
commands that queued up are handled together, in one transaction; a command that fails is handled
again alone, with its own retries or its own dead letter, while the rest of its batch goes through."""
import pytest
from django.db import connections

from orderhub import bus
from orderhub.deadletters.models import DeadLetter
from orderhub.orders.models import Order
from tests.conftest import eventually
from tests.integration.helpers import (
    api_client,
    consuming_held,
    place,
    product,
    wait_ended,
)
from tests.support.faults import BUG, failing_writes
from workers.inventory.models import Inbox, Reservation

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

ORDERS = 10
QUEUE = "inventory.commands"


def queued_orders(count=ORDERS):
    """`count` orders whose reserve command waits in inventory.commands, inventory not consuming."""
    sku = product(stock=100)
    client = api_client()
    orders = [place(client, sku=sku)["id"] for _ in range(count)]
    eventually(lambda: bus.queue_backlog(QUEUE) >= count, timeout=20,
               message=f"{count} commands waiting in {QUEUE}")
    return orders


def inbox_transactions(saga_ids):
    """The transactions (xmin) that wrote the reserve commands' inbox rows: one per batch."""
    with connections["inventory"].cursor() as cursor:
        cursor.execute("SELECT DISTINCT xmin::text FROM inventory_inbox WHERE message_type = 'inventory.reserve' "
                       "AND saga_id = ANY(%s::uuid[])", [[str(s) for s in saga_ids]])
        return {row[0] for row in cursor.fetchall()}


def test_commands_that_queued_up_are_handled_in_a_few_transactions_not_one_each(live):
    with consuming_held(live, "inventory-1", QUEUE):
        orders = queued_orders()

    ended = [wait_ended(order_id, timeout=30) for order_id in orders]

    assert {order.status for order in ended} == {"completed"}
    saga_ids = [order.saga_id for order in ended]
    transactions = inbox_transactions(saga_ids)
    # Prefetched together, they are handled together (a batch may be split where the broker's
    # deliveries paused, so not necessarily in one).
    assert 1 <= len(transactions) <= ORDERS // 2, transactions
    assert Reservation.objects.using("inventory").filter(saga_id__in=saga_ids).count() == ORDERS


def test_a_command_that_fails_is_handled_alone_and_the_rest_of_its_batch_goes_through(live):
    with consuming_held(live, "inventory-1", QUEUE):
        orders = queued_orders()
        doomed = Order.objects.get(id=orders[3]).saga_id
        # A bug (not a lost connection) on one saga's reservation, whichever batch it lands in.
        fault = failing_writes("inventory", "inventory_reservation", when=f"NEW.saga_id = '{doomed}'", sqlstate=BUG)
        fault.__enter__()
    try:
        others = [wait_ended(order_id, timeout=30) for order_id in orders if order_id != orders[3]]
        letter = eventually(lambda: DeadLetter.objects.filter(queue=QUEUE, body__contains=str(doomed)).first(),
                            timeout=20, message="the failing command in the archive")
    finally:
        fault.__exit__(None, None, None)

    assert {order.status for order in others} == {"completed"}
    assert letter.reason.startswith("bug: "), letter.reason
    assert "test fault on inventory_reservation" in letter.reason
    assert not Reservation.objects.using("inventory").filter(saga_id=doomed).exists()
    assert not Inbox.objects.using("inventory").filter(saga_id=doomed, message_type="inventory.reserve").exists()


def test_a_batch_hit_by_a_lost_connection_is_retried_with_one_effect_per_command(live):
    with consuming_held(live, "inventory-1", QUEUE):
        orders = queued_orders()
        # The first three inbox writes fail as a lost connection would: the batch rolls back, and
        # its commands are retried alone, each on its own infrastructure budget.
        fault = failing_writes("inventory", "inventory_inbox", times=3)
        fault.__enter__()
    try:
        ended = [wait_ended(order_id, timeout=60) for order_id in orders]
    finally:
        fault.__exit__(None, None, None)

    assert {order.status for order in ended} == {"completed"}
    saga_ids = [order.saga_id for order in ended]
    assert Reservation.objects.using("inventory").filter(saga_id__in=saga_ids).count() == ORDERS
    assert Inbox.objects.using("inventory").filter(saga_id__in=saga_ids, message_type="inventory.reserve").count() == ORDERS
    assert not DeadLetter.objects.filter(queue=QUEUE).exists()
