"""Crashes and redeliveries: nothing lost, nothing done twice."""
import signal
import uuid
from decimal import Decimal

import pytest
from django.db.models import Sum
from kombu import Connection

from contracts import Command
from orderhub import topology
from orderhub.bus import publish
from orderhub.celery import app
from orderhub.deadletters.models import DeadLetter
from sagas import outbox
from sagas.models import OutboxMessage
from tests.conftest import eventually
from tests.integration.helpers import api_client, place, product, stock, wait_ended
from workers.inventory.models import Inbox, Reservation
from workers.payments.models import Payment, ProviderCharge

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


def test_a_domain_worker_killed_mid_flow_loses_nothing_and_charges_nothing_twice(live):
    sku = product(price="5.00", stock=1000)
    client = api_client()
    first = [place(client, sku=sku, quantity=2)["id"] for _ in range(15)]
    eventually(lambda: Payment.objects.exists(), message="the first payment")
    live.kill("payments-1", signal.SIGKILL)
    during = [place(client, sku=sku, quantity=2)["id"] for _ in range(15)]
    live.start("payments")
    live.wait_ready(["payments-1"])
    orders = [wait_ended(order_id, timeout=30) for order_id in first + during]

    assert {order.status for order in orders} == {"completed"}
    assert stock(sku) == 1000 - 2 * len(orders)
    assert Reservation.objects.filter(status="reserved").count() == len(orders)
    assert Payment.objects.filter(status="captured").count() == len(orders)
    assert ProviderCharge.objects.filter(status="captured").count() == len(orders)
    captured = Payment.objects.filter(status="captured").aggregate(total=Sum("amount"))["total"]
    assert captured == sum(order.total for order in orders) == Decimal("10.00") * len(orders)


def test_the_same_command_delivered_twice_has_one_effect(live):
    sku = product(stock=10)
    command = Command(
        type="inventory.reserve",
        saga_id=str(uuid.uuid4()),
        step="reserve_stock",
        payload={"order_id": str(uuid.uuid4()), "items": [{"sku": sku, "quantity": 4}]},
    )
    publish(command.type, command.to_dict(), message_id=command.message_id)
    publish(command.type, command.to_dict(), message_id=command.message_id)

    eventually(lambda: Inbox.objects.filter(message_id=command.message_id).exists(), message="the inbox row")
    # Both copies are consumed once the queue is empty and nothing is unacknowledged.
    eventually(lambda: queue_depth("inventory.commands") == (0, 0), message="the queue to drain")
    assert Inbox.objects.filter(message_id=command.message_id).count() == 1
    assert Reservation.objects.filter(saga_id=command.saga_id).count() == 1
    assert stock(sku) == 6


def test_a_crash_between_commit_and_publish_is_repaired_by_the_relay(live, monkeypatch):
    sku = product(stock=10)
    # The process "dies" right after committing: the after-commit publish never happens.
    monkeypatch.setattr(outbox, "publish_committed", lambda rows: None)
    order_id = place(api_client(), sku=sku)["id"]
    # The command and the order.placed event, both left to the relay.
    assert sorted(OutboxMessage.objects.filter(published_at__isnull=True).values_list("message_type", flat=True)) == [
        "event:order.placed", "inventory.reserve"]

    order = wait_ended(order_id, timeout=15)

    assert order.status == "completed"
    # The order.completed event is written with the order's end and published just after that
    # commit, by the orchestrator (or, had it died, by the relay).
    eventually(lambda: not OutboxMessage.objects.filter(published_at__isnull=True).exists(), timeout=10,
               message="every outbox row published, the order.completed event included")


def test_malformed_messages_are_archived_with_their_reason_and_the_worker_keeps_serving(live):
    sku = product(stock=10)
    not_a_task, bad_envelope, not_json = (str(uuid.uuid4()) for _ in range(3))
    with Connection(app.conf.broker_url, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        producer.publish({"hello": "world"}, exchange=topology.EXCHANGE.name, routing_key="inventory.reserve",
                         message_id=not_a_task)
        producer.publish(b"{not json", exchange=topology.EXCHANGE.name, routing_key="inventory.reserve",
                         content_type="application/json", content_encoding="utf-8",
                         headers={"task": "inventory.reserve", "id": not_json})
    publish("inventory.reserve", {"type": "inventory.reserve", "payload": "nope"}, message_id=bad_envelope)

    letters = eventually(lambda: archived(not_a_task, bad_envelope, not_json), timeout=15,
                         message="three archived dead letters")
    assert letters[not_a_task].reason == "malformed: not a task message (no task header)"
    assert letters[bad_envelope].reason.startswith("malformed: command: missing")
    assert letters[not_json].reason.startswith("malformed: cannot decode the body")
    assert {letter.queue for letter in letters.values()} == {"inventory.commands"}
    order = wait_ended(place(api_client(), sku=sku)["id"])
    assert order.status == "completed"


def archived(*keys):
    letters = {letter.message_key: letter for letter in DeadLetter.objects.filter(message_key__in=keys)}
    return letters if len(letters) == len(keys) else None


def queue_depth(name):
    """(ready, unacknowledged) as RabbitMQ counts them; quorum queues report both in declare-ok."""
    with app.connection_for_read() as connection:
        channel = connection.channel()
        ok = channel.queue_declare(name, passive=True)
        channel.close()
        return ok.message_count, 0 if ok.message_count else _unacked(name)


def _unacked(name):
    import requests
    from django.conf import settings

    vhost = app.conf.broker_url.rsplit("/", 1)[-1] or "/"
    url = settings.RABBITMQ_MANAGEMENT_URL.rstrip("/") + f"/queues/{requests.utils.quote(vhost, safe='')}/{name}"
    response = requests.get(url, timeout=5)
    response.raise_for_status()  # the management API is part of the test set-up (ensure-services.sh)
    return response.json()["messages_unacknowledged"]
