"""The orchestrator applies replies in batches (sagas/consumer.py), through the real processes:
replies that queued up are applied together, in one transaction; a lost database connection holds
a batch until it answers again; a reply that fails is dead-lettered alone while the rest of its
batch goes through."""
import pytest
from django.db import connections

from orderhub import bus, topology
from orderhub.deadletters.models import DeadLetter
from orderhub.orders.models import Order
from sagas.models import SagaEvent
from tests.conftest import eventually
from tests.integration.helpers import api_client, place, product, replies_held, wait_ended
from tests.support.faults import BUG, failing_writes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

ORDERS = 10


def queued_orders(live, count=ORDERS):
    """`count` orders whose first reply waits in saga.replies, the orchestrator not consuming."""
    sku = product(stock=100)
    client = api_client()
    orders = [place(client, sku=sku)["id"] for _ in range(count)]
    eventually(lambda: bus.queue_backlog(topology.REPLIES_QUEUE) >= count, timeout=20,
               message=f"{count} replies waiting in saga.replies")
    return orders


def reserve_reply_transactions(saga_ids):
    """The transaction ids (xmin) that wrote the reserve_stock replies' events: one per batch."""
    ids = [str(s) for s in saga_ids]
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT DISTINCT xmin::text FROM saga_event WHERE kind = 'reply' AND step = 'reserve_stock' "
                       "AND saga_id = ANY(%s::uuid[])", [ids])
        return {row[0] for row in cursor.fetchall()}


def test_replies_that_queued_up_are_applied_in_a_few_transactions_not_one_each(live):
    with replies_held(live):
        orders = queued_orders(live)

    ended = [wait_ended(order_id, timeout=30) for order_id in orders]

    assert {order.status for order in ended} == {"completed"}
    transactions = reserve_reply_transactions([order.saga_id for order in ended])
    # Prefetched together, they are applied together (a batch may be split where the broker's
    # deliveries paused, so not necessarily in one).
    assert 1 <= len(transactions) <= ORDERS // 2, transactions


def test_a_batch_held_by_a_lost_database_connection_is_applied_once_it_answers(live):
    with replies_held(live):
        orders = queued_orders(live)
        # The first writes of the replies' events fail as a lost connection would.
        fault = failing_writes("default", "saga_event", when="NEW.kind = 'reply'", times=3)
        fault.__enter__()
    try:
        ended = [wait_ended(order_id, timeout=40) for order_id in orders]
    finally:
        fault.__exit__(None, None, None)

    assert {order.status for order in ended} == {"completed"}
    saga_ids = [order.saga_id for order in ended]
    assert SagaEvent.objects.filter(saga_id__in=saga_ids, kind="reply").count() == 5 * ORDERS
    assert not SagaEvent.objects.filter(saga_id__in=saga_ids, kind="stale_reply").exists()
    assert not DeadLetter.objects.filter(queue=topology.REPLIES_QUEUE, body__contains=str(saga_ids[0])).exists()


def test_a_reply_that_fails_is_dead_lettered_alone_and_the_rest_of_its_batch_goes_through(live):
    with replies_held(live):
        orders = queued_orders(live)
        doomed = Order.objects.get(id=orders[3]).saga_id
        # A bug (not a lost connection) on one saga's reply, whichever batch it lands in.
        fault = failing_writes("default", "saga_event", when=f"NEW.kind = 'reply' AND NEW.saga_id = '{doomed}'",
                               sqlstate=BUG)
        fault.__enter__()
    try:
        others = [wait_ended(order_id, timeout=30) for order_id in orders if order_id != orders[3]]
        letter = eventually(lambda: DeadLetter.objects.filter(queue=topology.REPLIES_QUEUE,
                                                              body__contains=str(doomed)).first(),
                            timeout=20, message="the failing reply in the archive")
    finally:
        fault.__exit__(None, None, None)

    assert {order.status for order in others} == {"completed"}
    assert letter.reason.startswith("failed: "), letter.reason
    assert "test fault on saga_event" in letter.reason
    assert Order.objects.get(id=orders[3]).status not in ("completed", "failed")
