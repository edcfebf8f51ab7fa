"""Client webhooks through the real processes: a receiver on loopback, running docs/api.md's own
verification code, is down while orders end, and once it is back sees every final state once,
each correctly signed; a delivery that exhausts its budget is dead-lettered with its reason, and
replaying the letter delivers it."""
from collections import Counter

import pytest

from orderhub.console import actions
from orderhub.deadletters.models import DeadLetter
from orderhub.orders.models import Order
from orderhub.webhooks.models import WebhookDelivery
from tests.conftest import eventually
from tests.integration.helpers import api_client, place, product, wait_ended
from tests.support.webhook_receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.down()


def register(client, receiver):
    response = client.post("/api/webhooks/", {"url": receiver.url, "description": "test receiver"}, format="json")
    assert response.status_code == 201, response.content
    receiver.secret = response.json()["secret"]
    return response.json()


def test_a_receiver_sees_every_final_state_once_signed_across_its_outage(live, receiver):
    sku = product(stock=100)
    client = api_client()
    register(client, receiver)
    receiver.down()

    tokens = ["tok_ok", "tok_declined", "tok_ok", "tok_insufficient_funds", "tok_ok", "tok_declined"]
    order_ids = [place(client, sku=sku, token=token)["id"] for token in tokens]
    for order_id in order_ids:
        wait_ended(order_id, timeout=30)
    # Every delivery has failed at least once while the receiver was down.
    eventually(lambda: WebhookDelivery.objects.filter(attempts__gte=1).count() == len(order_ids)
               and WebhookDelivery.objects.filter(status="pending").count() == len(order_ids),
               timeout=20, message="a failed try of every delivery during the outage")
    assert not receiver.received

    receiver.up()
    eventually(lambda: len(receiver.events()) >= len(order_ids), timeout=40,
               message="every final state delivered once the receiver is back")
    eventually(lambda: WebhookDelivery.objects.filter(status="delivered").count() == len(order_ids), timeout=10,
               message="every delivery recorded delivered")

    received = receiver.events()
    assert receiver.refused == []  # every request passed docs/api.md's signature check
    assert Counter(event["data"]["order_id"] for _, event in received) == Counter(order_ids)  # once each
    assert len({event_id for event_id, _ in received}) == len(order_ids)
    for event_id, event in received:
        order = Order.objects.get(id=event["data"]["order_id"])
        assert event["id"] == event_id and event["type"] == f"order.{order.status}"
        assert event["data"]["status"] == order.status and event["data"]["failure_reason"] == order.failure_reason
    assert Counter(event["type"] for _, event in received) == {"order.completed": 3, "order.failed": 3}
    assert all(int(headers["OrderHub-Delivery-Attempt"]) >= 2 for _, headers, _ in receiver.received)


def test_a_delivery_past_its_budget_is_dead_lettered_and_a_replay_delivers_it(live, receiver):
    sku = product(stock=10)
    client = api_client()
    endpoint = register(client, receiver)
    receiver.status = 503

    order_id = place(client, sku=sku, token="tok_ok")["id"]
    wait_ended(order_id, timeout=30)
    delivery = eventually(lambda: WebhookDelivery.objects.filter(endpoint_id=endpoint["id"], status="dead").first(),
                          timeout=40, message="the delivery dead past its budget")
    letter = eventually(lambda: DeadLetter.objects.filter(message_key=str(delivery.id), status="archived").first(),
                        timeout=20, message="the dead delivery in the dead-letter archive")
    assert delivery.attempts == 10 and delivery.last_error == "HTTP 503" and letter.queue == "webhooks.events"
    assert letter.reason == f"webhook undeliverable after 10 attempts to {receiver.url}: HTTP 503"
    assert letter.message_key == str(delivery.id) and letter.message_type == "webhook:order.completed"
    assert receiver.received == []

    receiver.status = 204
    report = actions.replay_dead_letters(actions.Actor("ada", "admin"),
                                         actions.ReplaySelection(ids=[letter.id]), "receiver fixed")
    assert report.replayed == [letter.id]
    eventually(lambda: receiver.events(), timeout=20, message="the replayed delivery")
    [(event_id, event)] = receiver.events()
    assert event["data"]["order_id"] == order_id and event_id == str(delivery.event_id)
    # The sender records the answer just after the receiver has the request.
    delivered = eventually(lambda: WebhookDelivery.objects.filter(id=delivery.id, status="delivered").first(),
                           timeout=10, message="the replayed delivery recorded delivered")
    assert delivered.attempts == 1
