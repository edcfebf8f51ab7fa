"""Domain events: facts about orders, published for any subscriber on the `orderhub.events` topic
exchange (routing key = the event's type), as CloudEvents 1.0 in the JSON format (structured mode:
the whole event is the message body, content type `application/cloudevents+json`).

An event is written to the outbox in the transaction that makes the change it announces
(`event_record`), and published from there like a command (sagas/outbox.py): an event is never
announced for a change that rolled back, nor lost for one that committed. It may be published more
than once after a crash, with the same `id`: subscribers deduplicate by it.

The types and their `data`, one JSON Schema each in contracts/events/:

    order.placed            the order was accepted and its saga started
    order.completed         captured, shipped, notified
    order.failed            ended without effect (failure_reason says why)
    order.cancelled         cancelled by its client before the pivot
    order.needs_attention   a compensation could not finish: an operator's turn
    order.resolved          an operator closed a needs_attention order
    payment.captured        the order's payment was captured (the pivot)
    shipment.created        the order's shipment was created
"""
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path



from orderhub.topology import EVENTS_EXCHANGE as EXCHANGE
SOURCE = "/orderhub/orders"
CONTENT_TYPE = "application/cloudevents+json"
# Outbox rows of events carry this prefix before the type (commands' types have none).
OUTBOX_PREFIX = "event:"
SCHEMAS = Path(__file__).resolve().parents[1] / "contracts" / "events"

ORDER_ENDED = {
    "completed": "order.completed",
    "failed": "order.failed",
    "cancelled": "order.cancelled",
    "needs_attention": "order.needs_attention",
    "resolved": "order.resolved",
}
TYPES = ("order.placed", *ORDER_ENDED.values(), "payment.captured", "shipment.created")


def cloudevent(event_type: str, *, subject: str, data: dict, saga_id=None, event_id=None, time=None) -> dict:
    """One CloudEvent (JSON format). `sagaid` is an extension attribute: the saga behind the fact."""
    if event_type not in TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    event = {
        "specversion": "1.0",
        "id": str(event_id or uuid.uuid4()),
        "source": SOURCE,
        "type": event_type,
        "subject": str(subject),
        "time": (time or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }
    if saga_id:
        event["sagaid"] = str(saga_id)
    return event


def event_record(event_type: str, *, subject: str, data: dict, saga_id=None):
    """Write the event to the outbox in the caller's transaction; published after commit."""
    from sagas import outbox
    from sagas.models import OutboxMessage

    event = cloudevent(event_type, subject=subject, data=data, saga_id=saga_id)
    kind = OUTBOX_PREFIX + event_type
    outbox.write(OutboxMessage(id=event["id"], message_type=kind, saga_id=saga_id or uuid.UUID(int=0), body=event))
    return event


def publish(event: dict, *, message_id: str, producer=None, retry=True):
    """Publish one event onto the exchange, persistent and confirmed (the outbox calls it, with a
    producer whose channel's confirms it awaits for a whole batch: sagas/outbox.py)."""
    from orderhub import topology
    from orderhub.celery import app

    topology.ensure_declared(app)
    with app.producer_or_acquire(producer) as producer:
        producer.publish(
            json.dumps(event).encode(), exchange=EXCHANGE, routing_key=event["type"], content_type=CONTENT_TYPE,
            content_encoding="utf-8", delivery_mode=2, message_id=message_id, type=event["type"],
            retry=retry, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
        )


def schema(event_type: str) -> dict:
    return json.loads((SCHEMAS / f"{event_type}.json").read_text())


# --- what a subscriber reads ----------------------------------------------------------------------
class BadEvent(ValueError):
    """An event a subscriber cannot take as it is (it dead-letters it, with this as its reason)."""


_validators = {}


def validate(event, *, types, reader) -> None:
    """Raise BadEvent unless `event` is one of `types` and valid against its schema."""
    from jsonschema import Draft202012Validator

    kind = event.get("type") if isinstance(event, dict) else None
    if kind not in types:
        raise BadEvent(f"not an event {reader} reads: {kind!r:.100}")
    validator = _validators.get(kind) or _validators.setdefault(
        kind, Draft202012Validator(schema(kind), format_checker=Draft202012Validator.FORMAT_CHECKER))
    errors = sorted(validator.iter_errors(event), key=str)
    if errors:
        raise BadEvent(f"{kind} breaks its schema: {errors[0].message:.300}")


def decode(body: bytes, *, types, reader) -> dict:
    """The event a message's body holds, checked (validate), or BadEvent."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent(f"not JSON: {exc}") from None
    validate(event, types=types, reader=reader)
    return event


# --- what the order's events carry -------------------------------------------------------------
def order_data(order, items=None) -> dict:
    """Money as decimal strings, never floats. `items`: the order's items when the caller has them
    (read from the order otherwise)."""
    return {
        "order_id": str(order.id),
        "client_id": order.client_id,
        "status": order.status,
        "failure_reason": order.failure_reason,
        "total": str(order.total),
        "items": [{"sku": item.sku, "quantity": item.quantity, "unit_price": str(item.unit_price)}
                  for item in (order.items.all() if items is None else items)],
        "placed_at": order.created_at.isoformat().replace("+00:00", "Z"),
    }
