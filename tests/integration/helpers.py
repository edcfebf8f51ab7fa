"""Data and API helpers for integration tests."""
import uuid
from contextlib import contextmanager
from decimal import Decimal

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from orderhub.apikeys.services import key_create
from orderhub.orders.models import FINAL_ORDER_STATUSES, Order, OrderStatus, Product
from tests.conftest import eventually
from workers.inventory.models import StockItem

ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Sq", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}
ENDED = set(FINAL_ORDER_STATUSES) | {OrderStatus.NEEDS_ATTENTION}


def product(sku="SKU-MUG", *, price="12.50", stock=100):
    Product.objects.create(sku=sku, name=sku.title(), price=Decimal(price))
    StockItem.objects.create(sku=sku, available=stock)
    return sku


def api_client(name=None):
    user = get_user_model().objects.create(username=name or f"client-{uuid.uuid4().hex[:8]}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key_create(client=user, name='test')[1]}")
    return client


def place(client, *, sku="SKU-MUG", quantity=1, token="tok_ok", country="GB", key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = client.post(
        "/api/orders/",
        {"items": [{"sku": sku, "quantity": quantity}], "payment_token": token,
         "shipping_address": ADDRESS | {"country": country}},
        format="json",
        **headers,
    )
    assert response.status_code == 202, response.content
    return response.json()


def wait_ended(order_id, timeout=10):
    return eventually(
        lambda: Order.objects.filter(id=order_id, status__in=ENDED).first(),
        timeout=timeout,
        message=f"order {order_id} to end",
    )


def stock(sku):
    return StockItem.objects.get(sku=sku).available


@contextmanager
def replies_held(cluster, worker="orchestrator-1"):
    """The orchestrator stops consuming saga.replies (it goes on with its ticks) until the end."""
    from orderhub import topology

    with consuming_held(cluster, worker, topology.REPLIES_QUEUE):
        yield


@contextmanager
def consuming_held(cluster, worker, queue):
    """`worker` stops consuming `queue` (cancel_consumer) until the end."""
    from orderhub.celery import app

    (name,) = cluster.worker_names([worker])
    answer = app.control.cancel_consumer(queue, destination=[name], reply=True)
    assert answer, f"{worker} did not answer cancel_consumer"
    # The worker answers before it acts on it (Celery's call_soon): until the broker has seen the
    # consumer go, a message published now may still be delivered to it.
    eventually(lambda: queue_consumers(queue) == 0, timeout=10, message=f"{worker} no longer consuming {queue}")
    try:
        yield
    finally:
        app.control.add_consumer(queue, destination=[name], reply=True)


def queue_consumers(queue_name):
    """How many consumers the broker counts on a queue (a passive declare)."""
    from orderhub.celery import app

    with app.pool.acquire(block=True, timeout=2) as connection:
        channel = connection.channel()
        try:
            return channel.queue_declare(queue=queue_name, passive=True).consumer_count
        finally:
            channel.close()
