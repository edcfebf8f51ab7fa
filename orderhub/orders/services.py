"""Order services: the functions that write. Views call these and nothing else."""
import hashlib
import json
import uuid
from decimal import Decimal

import structlog
from django.db import IntegrityError, transaction

from orderhub import events
from orderhub.orders import admission
from orderhub.orders.models import FINAL_ORDER_STATUSES, Order, OrderItem, Product
from sagas import engine
from sagas.definitions import PLACE_ORDER

log = structlog.get_logger(__name__)

CENT = Decimal("0.01")


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


class OrderNotCancellable(Exception):
    def __init__(self, detail):
        super().__init__(detail)
        self.detail = detail


def request_fingerprint(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def order_place(*, client, items, payment_token, shipping_address, idempotency_key=None, fingerprint="",
                request_id=None):
    """Create the order and start its saga in one transaction. Returns (order, created).
    Raises admission.Overloaded, creating nothing, while too many sagas are in flight (a replay
    of an Idempotency-Key already used is answered whatever the load)."""
    if idempotency_key:
        existing = _order_for_key(client, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
    admission.admit()
    try:
        return _order_create(client, items, payment_token, shipping_address, idempotency_key, fingerprint,
                             request_id), True
    except IntegrityError:
        # A concurrent request with the same key won the race: answer with its order.
        existing = _order_for_key(client, idempotency_key, fingerprint) if idempotency_key else None
        if existing is None:
            raise
        return existing, False


def _order_for_key(client, key, fingerprint):
    order = Order.objects.filter(client=client, idempotency_key=key).first()
    if order is not None and order.request_fingerprint != fingerprint:
        raise IdempotencyConflict(f"Idempotency-Key {key!r} was already used with a different request")
    return order


def _order_create(client, items, payment_token, shipping_address, idempotency_key, fingerprint, request_id=None):
    products = Product.objects.in_bulk([item["sku"] for item in items])
    saga_id = uuid.uuid4()  # written with the order: no second write of it
    with transaction.atomic():
        order = Order.objects.create(
            saga_id=saga_id,
            client=client,
            total=sum((products[i["sku"]].price * i["quantity"] for i in items), Decimal("0")).quantize(CENT),
            payment_token=payment_token,
            shipping_address=shipping_address,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
        )
        written = OrderItem.objects.bulk_create(
            OrderItem(
                order=order,
                sku=item["sku"],
                name=products[item["sku"]].name,
                quantity=item["quantity"],
                unit_price=products[item["sku"]].price,
            )
            for item in items
        )
        saga = engine.saga_start(
            saga_id=saga_id,
            definition=engine.starting_definition(PLACE_ORDER.name),
            correlation_id=str(order.id),
            context={
                "order_id": str(order.id),
                "items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in items],
                "total": str(order.total),
                "payment_token": payment_token,
                "shipping_address": shipping_address,
                # The request's id (orderhub/request_id.py): every command carries it, workers log it.
                **({"request_id": request_id} if request_id else {}),
            },
        )
        events.event_record("order.placed", subject=order.id, data=events.order_data(order, items=written),
                            saga_id=saga.id)
    log.info("order placed", order_id=str(order.id), saga_id=str(saga.id))
    return order


def order_cancel(*, order: Order) -> Order:
    if order.status in FINAL_ORDER_STATUSES:
        raise OrderNotCancellable(f"the order is already {order.status}")
    try:
        engine.saga_cancel(saga_id=order.saga_id)
    except engine.SagaNotCancellable as exc:
        raise OrderNotCancellable(exc.detail) from None
    order.refresh_from_db()
    return order
