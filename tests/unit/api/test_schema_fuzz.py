"""The OpenAPI schema as a contract: schemathesis generates requests for every operation from the
schema the API serves (/api/schema/, fetched with a client's token) and checks each answer: no
500, every status code and header declared, every body valid against the schema. Plus: the
schema and docs need a login, and the docs load nothing from a CDN."""
import json
import re

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orderhub.apikeys.services import key_create
from orderhub.orders.models import Product

pytestmark = pytest.mark.django_db(databases="__all__")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@pytest.fixture
def token(django_user_model):
    Product.objects.get_or_create(sku="SKU-FUZZ", defaults={"name": "Fuzzed mug", "price": "9.50"})
    return key_create(client=django_user_model.objects.create(username="fuzz-client"), name="fuzz")[1]


def served_schema() -> dict:
    """The schema /api/schema/ serves, from the same generator (built here at collection, when
    there is no database yet; a test below checks the live answer is the same)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = get_wsgi_application()


@pytest.fixture
def in_process():
    """The application is called in this process, inside the test's transaction: Django must not
    close the connection at each request's start and end (its test client does the same)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case, token, in_process):
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)


def test_the_schema_fuzzed_is_the_schema_served(client, token):
    assert client.get("/api/schema/?format=json", HTTP_AUTHORIZATION=f"Token {token}").json() == served_schema()


def test_the_schema_and_docs_need_a_login_and_load_nothing_from_a_cdn(client, token):
    assert client.get("/api/schema/").status_code == 401
    assert client.get("/api/docs/").status_code == 401
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}
    assert client.get("/api/schema/", **auth).status_code == 200
    for page in ("/api/docs/", "/api/redoc/"):
        html = client.get(page, **auth).content.decode()
        # what a browser would fetch: src/href/url attributes and string literals naming another host
        # (the page's CSP nonce is random base32 and may spell "cdn", so the word alone proves nothing)
        remote = re.findall(r"""(?:src|href|url)\s*[=:(]\s*["']?((?:https?:)?//[^"'\s)]+)""", html, re.I)
        assert remote == [], (page, remote)
        assert not re.search(r"jsdelivr|unpkg|cdnjs", html, re.I), page
        assert "/static/drf_spectacular_sidecar/" in html, page


def test_the_schema_types_the_order_its_saga_and_the_error(client, token):
    raw = client.get("/api/schema/?format=json", HTTP_AUTHORIZATION=f"Token {token}").json()
    components = raw["components"]["schemas"]
    order = components["Order"]["properties"]

    def ref(prop):
        return (prop.get("$ref") or prop["allOf"][0]["$ref"]).rsplit("/", 1)[1]

    assert components[ref(order["status"])]["enum"] == ["pending", "completed", "failed", "cancelled",
                                                         "needs_attention", "resolved"]
    assert "out_of_stock" in components[order["failure_reason"]["oneOf"][0]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert ref(order["saga"]) == "Saga" and ref(order["shipping_address"]) == "ShippingAddress"
    saga = components["Saga"]["properties"]
    assert "enum" in components[ref(saga["status"])] and saga["steps"]["items"]["$ref"].endswith("/SagaStep")
    assert set(components["Error"]["required"]) == {"error", "detail", "fields"}
    create = raw["paths"]["/api/orders/"]["post"]["responses"]
    assert {"202", "400", "401", "415", "422", "429", "500", "503"} <= set(create)
    assert "Location" in create["202"]["headers"] and "Idempotent-Replayed" in create["202"]["headers"]
    assert create["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
