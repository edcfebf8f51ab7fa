"""Overload and backlog, through real processes: a deadline measures a participant's silence, not
a queue of ours, and a command waiting its turn is not resent."""
import pytest
from django.utils import timezone

from orderhub import bus, topology
from orderhub.orders.models import Order
from sagas.definitions import PLACE_ORDER
from sagas.models import SagaEvent, SagaStep
from tests.conftest import eventually
from tests.integration.helpers import api_client, consuming_held, place, product, replies_held, wait_ended
from workers.inventory.models import Reservation
from workers.payments.models import ProviderCharge

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


def test_a_reply_waiting_in_the_orchestrators_queue_is_applied_before_its_deadline_is_judged(live):
    sku = product(stock=5)
    client = api_client()
    with replies_held(live):
        order_id = place(client, sku=sku)["id"]
        saga_id = Order.objects.get(id=order_id).saga_id
        # Inventory has answered; the reply waits in saga.replies.
        eventually(lambda: Reservation.objects.filter(saga_id=saga_id).exists(), message="the reservation")
        eventually(lambda: bus.queue_backlog(topology.REPLIES_QUEUE) >= 1, message="the reply to be queued")
        # Its deadline passes now, with no resend left, while the reply waits: judged before the
        # reply is applied, the step would time out.
        SagaStep.objects.filter(saga_id=saga_id, name="reserve_stock").update(
            deadline_at=timezone.now(), resends=PLACE_ORDER.steps[0].resends)
        # Beat's ticks go on; each queues a sweep marker behind the reply.
        eventually(lambda: bus.queue_backlog(topology.REPLIES_QUEUE) >= 4, message="sweep markers behind the reply")

    order = wait_ended(order_id, timeout=20)

    assert (order.status, order.failure_reason) == ("completed", None)
    reserve = SagaStep.objects.get(saga_id=saga_id, name="reserve_stock")
    assert (reserve.status, reserve.error) == ("succeeded", "")
    assert not SagaEvent.objects.filter(saga_id=saga_id, kind__in=["resend", "stale_reply"]).exists()


def test_a_command_queued_behind_a_slow_one_waits_its_turn_and_the_slow_one_still_times_out(live):
    sku = product(stock=5)
    client = api_client()
    slow = place(client, sku=sku, token="tok_slow")["id"]
    slow_saga = eventually(lambda: Order.objects.get(id=slow).saga_id, message="the slow order's saga")
    # The only payments worker is now inside the slow provider call (about 18 s here).
    eventually(lambda: SagaStep.objects.filter(saga_id=slow_saga, name="authorize", status="running").exists(),
               message="the slow authorization to be sent")
    eventually(lambda: bus.queue_backlog("payments.commands") == 0, message="the payments worker to take it")

    healthy = place(client, sku=sku, token="tok_ok")["id"]

    healthy_order = wait_ended(healthy, timeout=60)
    slow_order = wait_ended(slow, timeout=60)
    assert (healthy_order.status, healthy_order.failure_reason) == ("completed", None)
    assert (slow_order.status, slow_order.failure_reason) == ("failed", "deadline_exceeded")
    # The healthy authorization waited in the queue past its deadline: put off, never resent.
    authorize = SagaStep.objects.get(saga_id=healthy_order.saga_id, name="authorize")
    assert authorize.deferrals >= 1 and authorize.resends == 0 and authorize.attempts == 1
    assert SagaEvent.objects.filter(saga_id=healthy_order.saga_id, kind="deferred").count() == authorize.deferrals
    assert ProviderCharge.objects.filter(idempotency_key=f"{healthy_order.saga_id}:authorize",
                                         status="captured").count() == 1


def test_a_command_done_in_the_same_batch_as_a_slow_one_waits_for_its_commit_and_is_not_timed_out(live):
    """workers/batches.py: the healthy authorization is handled first, in the transaction the slow
    one then holds open for about 18 s, past the healthy step's deadline. Its reply waits for that
    commit; the sweep must see it waiting its turn (queued), not a participant gone silent."""
    sku = product(stock=5)
    client = api_client()
    with consuming_held(live, "payments-1", "payments.commands"):
        healthy = place(client, sku=sku, token="tok_ok")["id"]
        eventually(lambda: bus.queue_backlog("payments.commands") >= 1, message="the healthy authorization queued")
        slow = place(client, sku=sku, token="tok_slow")["id"]
        eventually(lambda: bus.queue_backlog("payments.commands") >= 2, message="the slow authorization queued behind it")

    healthy_order = wait_ended(healthy, timeout=60)
    slow_order = wait_ended(slow, timeout=60)
    assert (slow_order.status, slow_order.failure_reason) == ("failed", "deadline_exceeded")
    assert (healthy_order.status, healthy_order.failure_reason) == ("completed", None)
    authorize = SagaStep.objects.get(saga_id=healthy_order.saga_id, name="authorize")
    assert authorize.resends == 0 and authorize.attempts == 1
