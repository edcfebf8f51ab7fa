"""The REST contract of /api/products/ and /api/orders/, without a broker (nothing is published)."""
import copy
import json
from decimal import Decimal

import factory
import pytest
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory
from rest_framework.test import APIClient

from contracts import Command
from orderhub.apikeys.services import key_create
from orderhub.orders import admission
from orderhub.orders.models import Order, Product
from sagas.models import OutboxMessage, SagaInstance
from tests.unit.sagas.saga_harness import follow

pytestmark = pytest.mark.django_db(databases="__all__")

PLACE_ORDER_STEPS = ["reserve_stock", "authorize", "create_shipment", "capture", "notify"]
ALL_COMMANDS = ("inventory.reserve", "payments.authorize", "shipping.create", "payments.capture", "notifications.send")
ERROR_KEYS = {"error", "detail", "fields"}


# --- factories --------------------------------------------------------------------------------
class ProductFactory(DjangoModelFactory):
    class Meta:
        model = Product

    sku = factory.Sequence(lambda n: f"SKU-{n:04d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    price = Decimal("10.00")


class ApiClientUserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"client-{n}")


def api_as(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key_create(client=user, name='test')[1]}")
    return api


@pytest.fixture
def book():
    return ProductFactory(sku="BOOK-1", name="Enterprise Integration Patterns", price=Decimal("12.50"))


@pytest.fixture
def mug():
    return ProductFactory(sku="MUG-1", name="Saga mug", price=Decimal("19.99"))


@pytest.fixture
def api():
    return api_as(ApiClientUserFactory())


@pytest.fixture
def other_api():
    return api_as(ApiClientUserFactory())


@pytest.fixture
def order_body(book, mug):
    return {
        "items": [{"sku": book.sku, "quantity": 2}, {"sku": mug.sku, "quantity": 1}],
        "payment_token": "tok_visa",
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "12 St James's Square",
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country": "gb",
        },
    }


def place(api, body, **headers):
    response = api.post("/api/orders/", body, format="json", **headers)
    assert response.status_code == 202, response.content
    return response.json()


def created_rows():
    return Order.objects.count(), SagaInstance.objects.count(), OutboxMessage.objects.commands().count()


def assert_error(response, status_code, error):
    assert response.status_code == status_code, response.content
    body = response.json()
    assert set(body) == ERROR_KEYS | ({"error_id"} if error == "server_error" else set())
    assert body["error"] == error
    return body


def assert_not_found(response):
    assert response.status_code == 404, response.content
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["detail"] == "No Order matches the given query."


def saga_of(order_id) -> SagaInstance:
    return SagaInstance.objects.get(id=Order.objects.get(id=order_id).saga_id)


# --- authentication ---------------------------------------------------------------------------
@pytest.mark.parametrize("method, path", [("get", "/api/products/"), ("get", "/api/orders/"), ("post", "/api/orders/")])
def test_requests_without_a_token_are_unauthorized(method, path):
    response = getattr(APIClient(), method)(path)

    assert_error(response, 401, "not_authenticated")


def test_requests_with_an_unknown_token_are_unauthorized(api):
    api.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)

    response = api.get("/api/orders/")

    assert_error(response, 401, "authentication_failed")


# --- the catalogue ----------------------------------------------------------------------------
def test_products_are_a_plain_list_of_sku_name_and_price(api, book, mug):
    response = api.get("/api/products/")

    assert response.status_code == 200
    assert response.json() == [
        {"sku": "BOOK-1", "name": "Enterprise Integration Patterns", "price": "12.50"},
        {"sku": "MUG-1", "name": "Saga mug", "price": "19.99"},
    ]


# --- placing an order -------------------------------------------------------------------------
def test_placing_an_order_answers_202_with_the_pending_order_and_its_total(api, order_body):
    response = api.post("/api/orders/", order_body, format="json")

    assert response.status_code == 202
    order = response.json()
    assert order["status"] == "pending"
    assert order["total"] == "44.99"  # 2 x 12.50 + 1 x 19.99
    assert [(item["sku"], item["quantity"], item["unit_price"], item["line_total"]) for item in order["items"]] == [
        ("BOOK-1", 2, "12.50", "25.00"),
        ("MUG-1", 1, "19.99", "19.99"),
    ]
    assert Order.objects.get(id=order["id"]).total == Decimal("44.99")
    assert order["shipping_address"]["country"] == "GB"


def test_placing_an_order_starts_its_saga_and_queues_the_stock_reservation(api, order_body):
    order = place(api, order_body)

    saga = saga_of(order["id"])
    assert (saga.saga_type, saga.status, saga.correlation_id) == ("place_order", "running", order["id"])
    [reservation] = OutboxMessage.objects.commands()
    command = Command.from_dict(reservation.body)
    assert (command.type, command.saga_id) == ("inventory.reserve", str(saga.id))
    assert command.payload["order_id"] == order["id"]
    assert command.payload["items"] == [{"sku": "BOOK-1", "quantity": 2}, {"sku": "MUG-1", "quantity": 1}]
    assert reservation.published_at is None
    # ... and announces it, in the same transaction (orderhub/events.py)
    [placed] = OutboxMessage.objects.events()
    assert (placed.body["type"], placed.body["subject"], placed.body["sagaid"]) == ("order.placed", order["id"],
                                                                                     str(saga.id))


def test_repeating_a_request_with_its_idempotency_key_returns_the_same_order(api, order_body):
    first = place(api, order_body, HTTP_IDEMPOTENCY_KEY="order-42")

    replay = api.post("/api/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")

    assert replay.status_code == 202
    assert replay.json()["id"] == first["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert created_rows() == (1, 1, 1)


def test_the_same_idempotency_key_for_another_client_places_another_order(api, other_api, order_body):
    mine = place(api, order_body, HTTP_IDEMPOTENCY_KEY="order-42")

    theirs = place(other_api, order_body, HTTP_IDEMPOTENCY_KEY="order-42")

    assert theirs["id"] != mine["id"]
    assert created_rows() == (2, 2, 2)


def test_reusing_an_idempotency_key_with_a_different_body_is_unprocessable(api, order_body):
    place(api, order_body, HTTP_IDEMPOTENCY_KEY="order-42")
    order_body["items"][0]["quantity"] = 3

    response = api.post("/api/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")

    assert_error(response, 422, "idempotency_key_reused")
    assert created_rows() == (1, 1, 1)


def test_an_idempotency_key_longer_than_255_characters_is_unprocessable(api, order_body):
    response = api.post("/api/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)

    assert_error(response, 422, "unprocessable")
    assert created_rows() == (0, 0, 0)


def set_item(field, value):
    def change(body):
        body["items"][0][field] = value

    return change


def drop(*path):
    def change(body):
        *parents, last = path
        target = body
        for key in parents:
            target = target[key]
        del target[last]

    return change


def set_country(country):
    def change(body):
        body["shipping_address"]["country"] = country

    return change


def fifty_one_items(body):
    body["items"] = [{"sku": product.sku, "quantity": 1} for product in ProductFactory.create_batch(51)]


def repeat_first_item(body):
    body["items"].append(dict(body["items"][0]))


def no_items(body):
    body["items"] = []


INVALID_ORDERS = [
    pytest.param(set_item("sku", "NOPE-1"), ("items",), "Unknown sku: NOPE-1", id="unknown-sku"),
    pytest.param(set_item("quantity", 0), ("items", "0", "quantity"), "greater than or equal to 1", id="quantity-0"),
    pytest.param(
        set_item("quantity", 1001), ("items", "0", "quantity"), "less than or equal to 1000", id="quantity-1001"
    ),
    pytest.param(set_item("quantity", "2"), ("items", "0", "quantity"), "valid integer", id="quantity-as-string"),
    pytest.param(fifty_one_items, ("items", "non_field_errors"), "no more than 50", id="51-items"),
    pytest.param(no_items, ("items", "non_field_errors"), "may not be empty", id="no-items"),
    pytest.param(repeat_first_item, ("items",), "repeated: BOOK-1", id="repeated-sku"),
    pytest.param(drop("payment_token"), ("payment_token",), "required", id="missing-payment-token"),
    pytest.param(drop("shipping_address", "city"), ("shipping_address", "city"), "required", id="missing-city"),
    pytest.param(set_country("DEU"), ("shipping_address", "country"), "two-letter", id="country-DEU"),
    pytest.param(set_country("1A"), ("shipping_address", "country"), "two-letter", id="country-1A"),
]


@pytest.mark.parametrize("change, field_path, message", INVALID_ORDERS)
def test_invalid_order_is_rejected_with_its_fields_and_creates_nothing(api, order_body, change, field_path, message):
    body = copy.deepcopy(order_body)
    change(body)
    before = created_rows()

    response = api.post("/api/orders/", body, format="json")

    errors = assert_error(response, 400, "invalid")["fields"]
    for key in field_path:
        assert key in errors, f"expected an error under {field_path}, got {errors}"
        errors = errors[key]
    assert any(message in error for error in errors), errors
    assert created_rows() == before


def test_a_body_that_is_not_json_is_rejected_and_creates_nothing(api, order_body):
    response = api.post("/api/orders/", data="not json", content_type="application/json")

    body = assert_error(response, 400, "parse_error")
    assert body["fields"] == {}
    assert created_rows() == (0, 0, 0)


def test_a_body_nested_thousands_deep_is_a_parse_error_and_creates_nothing(api):
    body = '{"items": ' + "[" * 5000 + "]" * 5000 + "}"

    assert_error(api.post("/api/orders/", data=body, content_type="application/json"), 400, "parse_error")
    assert created_rows() == (0, 0, 0)


def test_an_order_whose_total_overflows_what_an_order_holds_is_refused_and_creates_nothing(api, order_body):
    dear = ProductFactory(sku="YACHT-1", price=Decimal("99999999.99"))
    body = order_body | {"items": [{"sku": dear.sku, "quantity": 1000}]}

    response = api.post("/api/orders/", body, format="json")

    assert "most an order may hold" in str(assert_error(response, 400, "invalid")["fields"]["items"])
    assert created_rows() == (0, 0, 0)


def test_an_order_at_the_largest_total_is_accepted(api, order_body):
    dear = ProductFactory(sku="YACHT-2", price=Decimal("9999999.99"))
    body = order_body | {"items": [{"sku": dear.sku, "quantity": 1000}]}

    assert api.post("/api/orders/", body, format="json").status_code == 202


def test_a_body_that_is_a_json_list_is_rejected_and_creates_nothing(api, order_body):
    response = api.post("/api/orders/", data=json.dumps([order_body]), content_type="application/json")

    body = assert_error(response, 400, "invalid")
    assert "non_field_errors" in body["fields"]
    assert created_rows() == (0, 0, 0)


# --- reading orders ---------------------------------------------------------------------------
def test_order_detail_shows_its_saga_with_the_five_steps_in_order(api, order_body):
    order = place(api, order_body)

    response = api.get(f"/api/orders/{order['id']}/")

    assert response.status_code == 200
    saga = response.json()["saga"]
    assert saga["status"] == "running"
    assert [step["name"] for step in saga["steps"]] == PLACE_ORDER_STEPS
    assert [(step["status"], step["attempts"]) for step in saga["steps"]] == [
        ("running", 1), ("pending", 0), ("pending", 0), ("pending", 0), ("pending", 0),
    ]


def test_another_clients_order_is_not_found(api, other_api, order_body):
    theirs = place(other_api, order_body)

    response = api.get(f"/api/orders/{theirs['id']}/")

    assert_not_found(response)


def test_not_found_errors_carry_the_not_found_code(api):
    response = api.get("/api/orders/00000000-0000-0000-0000-000000000000/")

    assert_error(response, 404, "not_found")


def test_order_list_shows_only_the_callers_orders_paginated(api, other_api, order_body):
    mine = {place(api, order_body)["id"], place(api, order_body)["id"]}
    place(other_api, order_body)

    response = api.get("/api/orders/")

    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 2
    assert {order["id"] for order in page["results"]} == mine
    assert all(order["saga"]["status"] == "running" for order in page["results"])


def test_order_list_filters_by_status(api, order_body):
    completed = place(api, order_body)
    place(api, order_body)
    follow(saga_of(completed["id"]).id).succeed(*ALL_COMMANDS).expect_status("completed")

    response = api.get("/api/orders/", {"status": "completed"})

    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 1
    assert [(order["id"], order["status"]) for order in page["results"]] == [(completed["id"], "completed")]


# --- cancelling -------------------------------------------------------------------------------
def test_cancelling_a_fresh_order_is_accepted_and_asks_its_saga_to_stop(api, order_body):
    order = place(api, order_body)

    response = api.post(f"/api/orders/{order['id']}/cancel/")

    assert response.status_code == 202
    assert response.json()["id"] == order["id"]
    assert saga_of(order["id"]).cancel_requested


def test_cancelling_an_order_at_capture_is_a_conflict(api, order_body):
    order = place(api, order_body)
    follow(saga_of(order["id"]).id).succeed(*ALL_COMMANDS[:3]).expect_command("payments.capture")

    response = api.post(f"/api/orders/{order['id']}/cancel/")

    assert_error(response, 409, "not_cancellable")
    assert not saga_of(order["id"]).cancel_requested


def test_cancelling_a_completed_order_is_a_conflict(api, order_body):
    order = place(api, order_body)
    follow(saga_of(order["id"]).id).succeed(*ALL_COMMANDS).expect_status("completed")

    response = api.post(f"/api/orders/{order['id']}/cancel/")

    assert_error(response, 409, "not_cancellable")


def test_cancelling_another_clients_order_is_not_found(api, other_api, order_body):
    theirs = place(other_api, order_body)

    response = api.post(f"/api/orders/{theirs['id']}/cancel/")

    assert_not_found(response)
    assert not saga_of(theirs["id"]).cancel_requested


# --- admission control ------------------------------------------------------------------------
def test_a_new_order_is_refused_at_the_door_with_503_and_retry_after_while_too_many_are_in_flight(
        api, order_body, settings):
    settings.ADMISSION_MAX_IN_FLIGHT = 2
    settings.ADMISSION_RETRY_AFTER = 3
    place(api, order_body)
    place(api, order_body)
    refused_before = admission.refused()
    before = created_rows()

    response = api.post("/api/orders/", order_body, format="json")

    body = assert_error(response, 503, "overloaded")
    assert response["Retry-After"] == "3"
    assert "2 orders are in progress (limit 2)" in body["detail"]
    assert created_rows() == before  # nothing created
    assert admission.refused() == refused_before + 1


def test_orders_are_admitted_again_once_sagas_end(api, order_body, settings):
    settings.ADMISSION_MAX_IN_FLIGHT = 1
    first = place(api, order_body)
    assert api.post("/api/orders/", order_body, format="json").status_code == 503

    SagaInstance.objects.filter(id=saga_of(first["id"]).id).update(status="completed")

    place(api, order_body)


def test_a_replayed_idempotency_key_is_answered_whatever_the_load(api, order_body, settings):
    first = place(api, order_body, HTTP_IDEMPOTENCY_KEY="k-1")
    settings.ADMISSION_MAX_IN_FLIGHT = 1

    response = api.post("/api/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (response.status_code, response.json()["id"], response["Idempotent-Replayed"]) == (202, first["id"], "true")
    assert api.post("/api/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="k-2").status_code == 503


# --- JSON errors for everything under /api/ ----------------------------------------------------
def test_a_path_under_api_that_nothing_serves_answers_in_the_error_shape(api):
    response = api.get("/api/no-such-thing/")
    assert assert_error(response, 404, "not_found")
    assert response["Content-Type"] == "application/json"


def test_a_method_a_resource_does_not_allow_answers_in_the_error_shape(api):
    assert assert_error(api.delete("/api/products/"), 405, "method_not_allowed")


def test_a_bug_answers_500_in_the_error_shape_with_an_id_that_is_in_the_log(api, monkeypatch):
    import io
    import logging

    from orderhub.api import views
    from orderhub.logs import formatter

    def crash(self, request, *args, **kwargs):
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(views.OrderViewSet, "list", crash)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("keyvalue"))
    logging.getLogger("orderhub.api.errors").addHandler(handler)
    try:
        api.raise_request_exception = False
        response = api.get("/api/orders/")
    finally:
        logging.getLogger("orderhub.api.errors").removeHandler(handler)
    body = assert_error(response, 500, "server_error")
    assert len(body["error_id"]) == 32
    assert "secret internals" not in response.content.decode() and "Traceback" not in response.content.decode()
    logged = stream.getvalue()
    assert f"error_id='{body['error_id']}'" in logged and "ZeroDivisionError: secret internals" in logged


# --- Location, ETag, and reads throttled apart from writes ------------------------------------
def test_creating_an_order_says_where_it_is_and_a_replay_says_the_same(api, order_body):
    first = api.post("/api/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="loc-1")
    assert first.status_code == 202
    assert first["Location"] == f"http://testserver/api/orders/{first.json()['id']}/"
    again = api.post("/api/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="loc-1")
    assert again["Location"] == first["Location"] and again["Idempotent-Replayed"] == "true"
    assert api.get(first["Location"]).json()["id"] == first.json()["id"]


def test_polling_with_the_etag_costs_a_304_until_the_order_moves(api, order_body):
    order_id = api.post("/api/orders/", order_body, format="json").json()["id"]
    first = api.get(f"/api/orders/{order_id}/")
    etag = first["ETag"]
    assert first.status_code == 200 and etag.startswith('"')

    unchanged = api.get(f"/api/orders/{order_id}/", HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged["ETag"] == etag
    assert api.get(f"/api/orders/{order_id}/", HTTP_IF_NONE_MATCH='"other", ' + etag).status_code == 304

    Order.objects.filter(id=order_id).update(status="completed")
    moved = api.get(f"/api/orders/{order_id}/", HTTP_IF_NONE_MATCH=etag)
    assert moved.status_code == 200 and moved["ETag"] != etag and moved.json()["status"] == "completed"


def test_reads_are_throttled_apart_from_writes(api, order_body, monkeypatch):
    from orderhub.api.throttling import UserRateThrottle

    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "2/min", "reads": "5/min"})
    for _ in range(5):
        assert api.get("/api/products/").status_code == 200
    assert api.get("/api/products/").status_code == 429  # reads used up
    assert api.post("/api/orders/", order_body, format="json").status_code == 202  # writes untouched
    assert api.post("/api/orders/", order_body, format="json").status_code == 202
    assert api.post("/api/orders/", order_body, format="json").status_code == 429
