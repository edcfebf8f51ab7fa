"""The PlaceOrder saga end to end: REST API -> outbox -> RabbitMQ -> real workers -> replies."""
import time
from decimal import Decimal

import pytest

from orderhub.orders.models import Order
from sagas.models import SagaEvent, SagaStep
from tests.integration.helpers import api_client, place, product, stock, wait_ended
from workers.notifications.models import Notification
from workers.payments.models import Payment, ProviderCharge
from workers.shipping.models import Shipment

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


def test_an_approved_order_completes_within_five_seconds(live):
    sku = product(price="12.50", stock=10)
    client = api_client()
    started = time.monotonic()
    order = wait_ended(place(client, sku=sku, quantity=3)["id"], timeout=5)
    elapsed = time.monotonic() - started

    assert order.status == "completed", order.failure_reason
    assert elapsed < 5
    assert stock(sku) == 7
    payment = Payment.objects.get(order_id=order.id)
    assert payment.status == "captured" and payment.amount == Decimal("37.50") == order.total
    assert ProviderCharge.objects.filter(status="captured").count() == 1
    assert Shipment.objects.filter(order_id=order.id, status="created").count() == 1
    assert Notification.objects.filter(order_id=order.id).count() == 1


def compensation_order(saga_id):
    """Names of the steps whose compensation was sent, in the order it was sent."""
    return [
        event.step
        for event in SagaEvent.objects.filter(saga_id=saga_id, kind="command").order_by("id")
        if event.message_type in ("inventory.release", "payments.void", "shipping.cancel")
    ]


@pytest.mark.parametrize(
    "token, country, quantity, reason, compensated",
    [
        ("tok_ok", "GB", 50, "out_of_stock", []),
        ("tok_declined", "GB", 1, "payment_declined", ["reserve_stock"]),
        ("tok_insufficient_funds", "GB", 1, "insufficient_funds", ["reserve_stock"]),
        ("tok_ok", "AQ", 1, "address_unsupported", ["authorize", "reserve_stock"]),
    ],
)
def test_a_business_failure_compensates_completed_steps_in_reverse_order(
    live, token, country, quantity, reason, compensated
):
    sku = product(stock=10)
    order = wait_ended(place(api_client(), sku=sku, quantity=quantity, token=token, country=country)["id"])

    assert (order.status, order.failure_reason) == ("failed", reason)
    assert compensation_order(order.saga_id) == compensated
    steps = {step.name: step for step in SagaStep.objects.filter(saga_id=order.saga_id)}
    assert all(steps[name].status == "compensated" for name in compensated)
    times = [steps[name].compensated_at for name in compensated]
    assert times == sorted(times)
    assert stock(sku) == 10
    assert not Payment.objects.filter(order_id=order.id, status="captured").exists()
    assert not ProviderCharge.objects.filter(status="captured").exists()


def test_cancelling_right_after_creation_compensates_or_is_refused_after_the_pivot(live):
    sku = product(stock=10)
    client = api_client()
    order_id = place(client, sku=sku, quantity=2)["id"]
    response = client.post(f"/api/orders/{order_id}/cancel/")
    order = wait_ended(order_id)

    if response.status_code == 202:
        assert (order.status, order.failure_reason) == ("cancelled", "cancelled_by_client")
        assert stock(sku) == 10
        assert not Payment.objects.filter(order_id=order_id, status__in=["authorized", "captured"]).exists()
        assert not Shipment.objects.filter(order_id=order_id, status="created").exists()
    else:
        assert response.status_code == 409, response.content
        assert order.status == "completed"


def test_cancelling_a_completed_order_is_refused(live):
    sku = product(stock=10)
    client = api_client()
    order = wait_ended(place(client, sku=sku)["id"])
    assert order.status == "completed"

    response = client.post(f"/api/orders/{order.id}/cancel/")

    assert response.status_code == 409
    assert Order.objects.get(id=order.id).status == "completed"
