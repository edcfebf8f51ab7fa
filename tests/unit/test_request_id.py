"""X-Request-ID (orderhub/request_id.py): returned on every response, on every log line of the
request, and carried into the saga of an order placed; workers log it with each command."""
import io
import logging

import pytest
from rest_framework.test import APIClient

from orderhub.logs import bind_message_ids, formatter, unbind_message_ids
from orderhub.orders.models import Order
from sagas.models import SagaInstance
from tests.integration.helpers import ADDRESS

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def client(django_user_model):
    from decimal import Decimal

    from orderhub.orders.models import Product

    Product.objects.get_or_create(sku="SKU-RID", defaults={"name": "Mug", "price": Decimal("5.00")})
    api = APIClient()
    api.force_authenticate(django_user_model.objects.create(username="rid-client"))
    return api


def place(client, **headers):
    return client.post("/api/orders/", {"items": [{"sku": "SKU-RID", "quantity": 1}], "payment_token": "tok_ok",
                                        "shipping_address": ADDRESS}, format="json", **headers)


def test_a_request_without_an_id_gets_a_new_one_each_time(client):
    first, second = client.get("/api/products/"), client.get("/api/products/")
    assert len(first["X-Request-ID"]) == 32 and first["X-Request-ID"] != second["X-Request-ID"]
    assert client.get("/no/such/page/")["X-Request-ID"]


@pytest.mark.parametrize("given, kept", [("req-42.a:b_C", True), ("x" * 64, True), ("x" * 65, False),
                                         ("has space", False), ("new\nline", False), ("", False)])
def test_a_clients_id_is_kept_only_when_it_is_a_sane_one(client, given, kept):
    returned = client.get("/api/products/", HTTP_X_REQUEST_ID=given)["X-Request-ID"]
    assert (returned == given) is kept and returned


def test_the_id_is_on_the_requests_log_lines_and_in_the_saga_of_the_order_it_placed(client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("keyvalue"))
    logger = logging.getLogger("orderhub.orders.services")
    level, logger.level = logger.level, logging.INFO
    logger.addHandler(handler)
    try:
        response = place(client, HTTP_X_REQUEST_ID="trace-me-1")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert response.status_code == 202 and response["X-Request-ID"] == "trace-me-1"
    saga = SagaInstance.objects.get(id=Order.objects.get(id=response.json()["id"]).saga_id)
    assert saga.context["request_id"] == "trace-me-1"
    [placed] = [line for line in stream.getvalue().splitlines() if "order placed" in line]
    assert "request_id='trace-me-1'" in placed


def test_a_worker_binds_the_orders_ids_from_the_command_for_its_log_lines():
    from structlog.contextvars import get_contextvars

    class Task:
        name = "inventory.reserve"

    body = {"message_id": "m-1", "saga_id": "s-1", "correlation_id": "order-1",
            "payload": {"request_id": "trace-me-2", "order_id": "order-1"}}
    bind_message_ids(task_id="m-1", task=Task(), args=[body])
    try:
        assert get_contextvars().items() >= {"correlation_id": "order-1", "request_id": "trace-me-2", "saga_id": "s-1"}.items()
    finally:
        unbind_message_ids()
    bind_message_ids(task_id="t", task=Task(), args=[{"payload": {"request_id": 7}}])
    try:
        assert "request_id" not in get_contextvars() and "correlation_id" not in get_contextvars()
    finally:
        unbind_message_ids()
