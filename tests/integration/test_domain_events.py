"""Domain events (orderhub/events.py) as a subscriber sees them: a throwaway queue bound to the
orderhub.events exchange receives one CloudEvent per fact, each valid against its JSON Schema in
contracts/events/, from orders that complete, fail and are cancelled through real processes."""
import json
from decimal import Decimal
import uuid

import pytest
from jsonschema import Draft202012Validator
from kombu import Queue

from orderhub import events
from orderhub.celery import app
from tests.conftest import eventually
from tests.integration.helpers import api_client, place, product, wait_ended

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


@pytest.fixture
def subscriber():
    """An exclusive queue bound to every event; yields a function draining what has arrived."""
    connection = app.connection_for_write()
    channel = connection.channel()
    queue = Queue(f"test.events.{uuid.uuid4().hex[:8]}", events.EXCHANGE, routing_key="#", exclusive=True,
                  auto_delete=True, durable=False)(channel)
    queue.declare()
    received = []

    def drain():
        while (message := queue.get(no_ack=True)) is not None:
            received.append(message)
        return received

    yield drain
    channel.close()
    connection.release()


def facts_of(messages, order_ids):
    """{(type, order id): [event, ...]} for the given orders, each message checked as it came."""
    facts = {}
    for message in messages:
        assert message.content_type == events.CONTENT_TYPE
        event = json.loads(message.body)
        assert message.properties["message_id"] == event["id"]
        assert message.delivery_info["routing_key"] == event["type"]
        if event["subject"] in order_ids:
            facts.setdefault((event["type"], event["subject"]), []).append(event)
    return facts


def test_a_subscriber_sees_one_valid_cloudevent_per_fact(live, subscriber):
    sku = product(price="7.25", stock=10)
    client = api_client()
    completed = wait_ended(place(client, sku=sku, quantity=2)["id"])
    declined = wait_ended(place(client, sku=sku, token="tok_declined")["id"])
    unsupported = wait_ended(place(client, sku=sku, country="AQ")["id"])
    # Cancelled at once: nearly always before the pivot (then it is cancelled), else it completes.
    second = place(client, sku=sku)["id"]
    cancelling = client.post(f"/api/orders/{second}/cancel/").status_code
    cancelled = wait_ended(second)
    assert (completed.status, declined.status, unsupported.status) == ("completed", "failed", "failed")
    assert (cancelling, cancelled.status) in ((202, "cancelled"), (409, "completed"))

    ids = {str(o.id) for o in (completed, declined, unsupported, cancelled)}
    expected = {(kind, str(completed.id)) for kind in ("order.placed", "shipment.created", "payment.captured",
                                                       "order.completed")}
    expected |= {(kind, str(declined.id)) for kind in ("order.placed", "order.failed")}
    expected |= {(kind, str(unsupported.id)) for kind in ("order.placed", "order.failed")}
    expected |= {(kind, str(cancelled.id)) for kind in (
        ("order.placed", "order.cancelled") if cancelled.status == "cancelled"
        else ("order.placed", "shipment.created", "payment.captured", "order.completed"))}
    facts = eventually(lambda: (f := facts_of(subscriber(), ids)) and set(f) >= expected and f, timeout=10,
                       message="every fact to be published")

    assert set(facts) == expected  # nothing announced that did not happen (no shipment for a failure, ...)
    for (kind, order_id), copies in facts.items():
        assert len({event["id"] for event in copies}) == 1, f"{kind} of {order_id} announced {len(copies)} times"
        event = copies[0]
        errors = sorted(Draft202012Validator(events.schema(kind), format_checker=Draft202012Validator.FORMAT_CHECKER)
                        .iter_errors(event), key=str)
        assert not errors, f"{kind}: {[e.message for e in errors]}"

    done = facts[("order.completed", str(completed.id))][0]["data"]
    assert done["total"] == "14.50" and done["items"] == [{"sku": sku, "quantity": 2, "unit_price": "7.25"}]
    assert facts[("payment.captured", str(completed.id))][0]["data"]["amount"] == "14.50"
    assert facts[("order.failed", str(declined.id))][0]["data"]["failure_reason"] == "payment_declined"
    assert facts[("order.failed", str(unsupported.id))][0]["data"]["failure_reason"] == "address_unsupported"
    assert facts[("order.placed", str(completed.id))][0]["sagaid"] == str(completed.saga_id)


def test_the_sales_projection_fed_by_the_projections_process_equals_a_rebuild(live):
    from orderhub.reports import projection

    sku = product(price="3.00", stock=10)
    client = api_client()
    orders = [wait_ended(place(client, sku=sku, quantity=q, token=t)["id"])
              for q, t in ((1, "tok_ok"), (2, "tok_ok"), (1, "tok_declined"))]
    assert [o.status for o in orders] == ["completed", "completed", "failed"]

    held = eventually(lambda: (r := projection.from_projection())["by_outcome"] == {"completed": 2, "failed": 1} and r,
                      timeout=15, message="the projection to apply the three endings")

    assert held == projection.from_orders()
    assert [(units, revenue) for _, _, units, revenue in held["by_day"]] == [(3, Decimal("9.00"))]
    assert projection.rebuild() == held == projection.from_projection()
