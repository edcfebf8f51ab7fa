"""Domain events (orderhub/events.py): CloudEvents written to the outbox in the transaction of
the change they announce, each valid against its JSON Schema in contracts/events/."""
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from jsonschema import Draft202012Validator

from orderhub import events
from orderhub.orders.models import Order, Product
from orderhub.orders.services import order_place
from sagas.models import OutboxMessage
from workers.inventory.models import StockItem

pytestmark = pytest.mark.django_db(databases="__all__")

ADDRESS = {"name": "Ada", "line1": "1 Loop Rd", "city": "London", "postal_code": "N1", "country": "GB"}


def valid(event):
    validator = Draft202012Validator(events.schema(event["type"]), format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [error.message for error in validator.iter_errors(event)]


def test_every_event_type_has_a_schema_that_is_itself_valid():
    names = {path.name.removesuffix(".json") for path in events.SCHEMAS.glob("*.json")}
    assert names == set(events.TYPES)
    for name in events.TYPES:
        schema = events.schema(name)
        Draft202012Validator.check_schema(schema)
        assert schema["properties"]["type"] == {"const": name}


def test_an_unknown_type_is_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        events.cloudevent("order.exploded", subject=uuid.uuid4(), data={})


def placed():
    Product.objects.create(sku="EV-1", name="Ev", price=Decimal("3.10"))
    StockItem.objects.create(sku="EV-1", available=5)
    client = get_user_model().objects.create(username=f"ev-{uuid.uuid4().hex[:6]}")
    order, _ = order_place(client=client, items=[{"sku": "EV-1", "quantity": 3}], payment_token="tok_ok",
                           shipping_address=ADDRESS)
    return order


def test_placing_an_order_writes_its_order_placed_event_valid_against_the_schema():
    order = placed()

    [row] = OutboxMessage.objects.events()
    event = row.body
    assert row.message_type == "event:order.placed" and str(row.id) == event["id"]
    assert valid(event) == []
    assert event["data"]["total"] == "9.30" and event["data"]["items"][0]["unit_price"] == "3.10"  # strings, not floats
    assert (event["subject"], event["sagaid"]) == (str(order.id), str(order.saga_id))


def test_a_change_that_rolls_back_announces_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        placed()
        raise RuntimeError("the caller's transaction fails after the order was placed")

    assert not Order.objects.exists()
    assert not OutboxMessage.objects.events().exists()


def test_an_event_that_breaks_its_schema_is_caught_by_it():
    """The schemas are not vacuous: a float total, a missing item list or a stray field fail."""
    order = placed()
    event = OutboxMessage.objects.events().get().body
    assert valid(event | {"data": event["data"] | {"total": 9.3}})
    assert valid(event | {"data": {k: v for k, v in event["data"].items() if k != "items"}})
    assert valid(event | {"surprise": True})
    assert valid(event | {"type": "order.completed"})  # placed's data has status pending
    assert str(order.id) == event["subject"]


@pytest.mark.parametrize("status, reason", [("completed", None), ("failed", "payment_declined"),
                                            ("cancelled", "cancelled_by_client"), ("needs_attention", "handler_error"),
                                            ("resolved", None)])
def test_each_ending_of_an_order_is_announced_as_its_schema_says(status, reason):
    order = placed()
    Order.objects.filter(id=order.id).update(status=status, failure_reason=reason)
    order = Order.objects.prefetch_related("items").get(id=order.id)

    event = events.cloudevent(events.ORDER_ENDED[status], subject=order.id, data=events.order_data(order),
                              saga_id=order.saga_id)

    assert valid(event) == []
    assert event["type"] == f"order.{status}" and event["data"]["status"] == status
