"""Client webhooks (orderhub/webhooks): the signature and its check, where a URL may point, the
endpoints' API (the secret shown once, rotation, removal), the fan-out of an event into
deliveries, and a delivery's tries against a real HTTP server on loopback."""
import json
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from orderhub import events
from orderhub.apikeys.services import key_create
from orderhub.orders.models import Order, Product
from orderhub.orders.services import order_place
from orderhub.webhooks import addresses, services, signing
from orderhub.webhooks.models import WebhookDelivery, WebhookEndpoint
from workers.inventory.models import StockItem

pytestmark = pytest.mark.django_db(databases="__all__")
ADDRESS = {"name": "Ada", "line1": "1 Loop Rd", "city": "London", "postal_code": "N1", "country": "GB"}
BODY = b'{"id":"e1","type":"order.completed"}'


# --- the signature ------------------------------------------------------------------------------
def test_a_signature_verifies_with_its_secret_only_and_covers_timestamp_event_and_body():
    header = signing.sign(["whsec_a"], "e1", BODY, timestamp=1_000_000)
    assert signing.verify("whsec_a", header, "e1", BODY, now=1_000_010) == 1_000_000
    for secret, event_id, body in (("whsec_b", "e1", BODY), ("whsec_a", "e2", BODY), ("whsec_a", "e1", BODY + b" ")):
        with pytest.raises(signing.SignatureError, match="no signature matches"):
            signing.verify(secret, header, event_id, body, now=1_000_010)
    forged = header.replace("t=1000000", "t=1000500")  # a fresh timestamp on an old signature
    with pytest.raises(signing.SignatureError, match="no signature matches"):
        signing.verify("whsec_a", forged, "e1", BODY, now=1_000_500)


def test_an_old_request_is_refused_as_a_replay():
    header = signing.sign(["whsec_a"], "e1", BODY, timestamp=1_000_000)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify("whsec_a", header, "e1", BODY, now=1_000_000 + signing.TOLERANCE_SECONDS + 1)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=x,v1=abc", "t=1,t=2,v1=abc", "t=1000000"])
def test_a_malformed_signature_header_is_refused(header):
    with pytest.raises(signing.SignatureError):
        signing.verify("whsec_a", header, "e1", BODY, now=1_000_000)


def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(client_user):
    endpoint = services.endpoint_create(client=client_user, url="http://127.0.0.1:9/hook")
    old = endpoint.secret
    endpoint = services.endpoint_rotate_secret(endpoint=endpoint)
    assert endpoint.secret != old and services.signing_secrets(endpoint) == [endpoint.secret, old]
    header = signing.sign(services.signing_secrets(endpoint), "e1", BODY)
    assert signing.verify(old, header, "e1", BODY) and signing.verify(endpoint.secret, header, "e1", BODY)
    later = endpoint.previous_secret_expires_at + timedelta(seconds=1)
    assert services.signing_secrets(endpoint, now=later) == [endpoint.secret]


# --- where a URL may point ----------------------------------------------------------------------
@pytest.mark.parametrize("url, why", [
    ("ftp://example.com/hook", "scheme"), ("http:///hook", "no host"), ("https://u:p@example.com/", "credentials"),
    ("https://example.com:99999/", "not a URL"),
])
def test_a_url_that_is_no_http_endpoint_is_refused_anywhere(url, why):
    with pytest.raises(addresses.RefusedURL, match=why):
        addresses.check(url)


def test_locally_a_receiver_on_loopback_is_fine():
    assert addresses.check("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"


@pytest.mark.parametrize("url, why", [
    ("http://93.184.216.34/hook", "scheme"),
    ("https://127.0.0.1/hook", "loopback"), ("https://localhost:8443/hook", "loopback"),
    ("https://[::1]/hook", "loopback"), ("https://0.0.0.0/hook", "loopback"),
    ("https://10.1.2.3/hook", "private"), ("https://169.254.169.254/latest", "private"),
    ("https://192.168.1.1/hook", "private"),
])
def test_in_production_loopback_and_private_addresses_are_refused(settings, url, why):
    settings.PRODUCTION, settings.WEBHOOK_ALLOW_PRIVATE_URLS = True, False
    with pytest.raises(addresses.RefusedURL, match=why):
        addresses.check(url)
    assert addresses.check("https://93.184.216.34/hook")


def test_in_production_private_addresses_may_be_allowed_but_never_loopback(settings):
    settings.PRODUCTION, settings.WEBHOOK_ALLOW_PRIVATE_URLS = True, True
    assert addresses.check("https://10.1.2.3/hook")
    with pytest.raises(addresses.RefusedURL, match="loopback"):
        addresses.check("https://127.0.0.1/hook")


# --- the endpoints' API -------------------------------------------------------------------------
@pytest.fixture
def client_user():
    return get_user_model().objects.create(username=f"hooked-{uuid.uuid4().hex[:6]}")


def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key_create(client=user, name='test')[1]}")
    return client


def test_the_secret_is_shown_on_creation_and_rotation_only(client_user):
    client = api(client_user)
    created = client.post("/api/webhooks/", {"url": "http://127.0.0.1:9/hook", "description": "shop"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["url"] == "http://127.0.0.1:9/hook"
    assert WebhookEndpoint.objects.get(id=body["id"]).secret == body["secret"]

    listed = client.get("/api/webhooks/").json()
    assert [row["id"] for row in listed["results"]] == [body["id"]] and "secret" not in listed["results"][0]
    assert "secret" not in client.get(f"/api/webhooks/{body['id']}/").json()

    rotated = client.post(f"/api/webhooks/{body['id']}/rotate-secret/").json()
    assert rotated["secret"] != body["secret"]


def test_a_client_sees_and_removes_only_its_own_endpoints(client_user):
    theirs = services.endpoint_create(client=get_user_model().objects.create(username="other"),
                                      url="http://127.0.0.1:9/other")
    client = api(client_user)
    assert client.get(f"/api/webhooks/{theirs.id}/").status_code == 404
    assert client.delete(f"/api/webhooks/{theirs.id}/").status_code == 404
    assert client.post(f"/api/webhooks/{theirs.id}/rotate-secret/").status_code == 404
    mine = services.endpoint_create(client=client_user, url="http://127.0.0.1:9/mine")
    assert client.delete(f"/api/webhooks/{mine.id}/").status_code == 204
    assert client.get("/api/webhooks/").json()["results"] == []
    assert WebhookEndpoint.objects.get(id=theirs.id).active


@pytest.mark.parametrize("payload, field", [
    ({"url": "not a url"}, "url"), ({"url": "ftp://example.com/x"}, "url"), ({}, "url"),
    ({"url": "http://127.0.0.1/x", "description": "x" * 201}, "description"),
])
def test_a_bad_endpoint_is_refused_with_the_field_and_creates_nothing(client_user, payload, field):
    response = api(client_user).post("/api/webhooks/", payload, format="json")
    assert response.status_code == 400 and field in response.json()["fields"], response.content
    assert not WebhookEndpoint.objects.exists()


def test_in_production_a_loopback_endpoint_is_refused_by_the_api(client_user, settings):
    settings.PRODUCTION = True
    response = api(client_user).post("/api/webhooks/", {"url": "https://127.0.0.1/x"}, format="json")
    assert response.status_code == 400 and "loopback" in str(response.json()["fields"]["url"])


def test_a_client_has_at_most_so_many_endpoints(client_user, settings):
    settings.WEBHOOK_ENDPOINTS_PER_CLIENT = 2
    client = api(client_user)
    for n in range(2):
        assert client.post("/api/webhooks/", {"url": f"http://127.0.0.1:9/{n}"}, format="json").status_code == 201
    refused = client.post("/api/webhooks/", {"url": "http://127.0.0.1:9/3"}, format="json")
    assert refused.status_code == 422 and refused.json()["error"] == "too_many_endpoints"


# --- fan-out --------------------------------------------------------------------------------------
def final_event(user, status="completed"):
    Product.objects.get_or_create(sku="W-1", defaults={"name": "W", "price": Decimal("4.00")})
    StockItem.objects.using("inventory").get_or_create(sku="W-1", defaults={"available": 100})
    order, _ = order_place(client=user, items=[{"sku": "W-1", "quantity": 2}], payment_token="tok_ok",
                           shipping_address=ADDRESS)
    Order.objects.filter(id=order.id).update(status=status)
    order = Order.objects.prefetch_related("items").get(id=order.id)
    return json.loads(json.dumps(events.cloudevent(events.ORDER_ENDED[status], subject=order.id,
                                                   data=events.order_data(order), saga_id=order.saga_id)))


def test_an_event_becomes_one_delivery_per_active_endpoint_of_its_client_once(client_user):
    first = services.endpoint_create(client=client_user, url="http://127.0.0.1:9/a")
    second = services.endpoint_create(client=client_user, url="http://127.0.0.1:9/b")
    removed = services.endpoint_create(client=client_user, url="http://127.0.0.1:9/c")
    services.endpoint_remove(endpoint=removed)
    services.endpoint_create(client=get_user_model().objects.create(username="someone-else"), url="http://127.0.0.1:9/")
    event = final_event(client_user)

    assert services.fan_out(event) == 2
    assert services.fan_out(event) == 0  # redelivered
    assert {row.endpoint_id for row in WebhookDelivery.objects.all()} == {first.id, second.id}
    assert {str(row.event_id) for row in WebhookDelivery.objects.all()} == {event["id"]}


def test_a_batch_of_events_becomes_the_deliveries_of_each_once(client_user):
    other = get_user_model().objects.create(username="another-client")
    mine = services.endpoint_create(client=client_user, url="http://127.0.0.1:9/a")
    theirs = services.endpoint_create(client=other, url="http://127.0.0.1:9/b")
    get_user_model().objects.create(username="no-endpoints")
    first, second, of_other = final_event(client_user), final_event(client_user), final_event(other)
    assert services.fan_out(first) == 1  # an earlier batch

    assert services.fan_out_many([first, second, second, of_other]) == 2

    assert sorted((row.endpoint_id, str(row.event_id)) for row in WebhookDelivery.objects.all()) == sorted(
        [(mine.id, first["id"]), (mine.id, second["id"]), (theirs.id, of_other["id"])])
    assert services.fan_out_many([first, second, of_other]) == 0
    assert WebhookDelivery.objects.count() == 3


def test_an_event_the_webhooks_cannot_read_is_refused_with_a_reason():
    with pytest.raises(events.BadEvent, match="not an event the webhooks reads"):
        events.decode(b'{"type": "order.placed"}', types=services.TYPES, reader="the webhooks")
    with pytest.raises(events.BadEvent, match="breaks its schema"):
        events.decode(json.dumps({"type": "order.completed", "data": {}}).encode(), types=services.TYPES,
                      reader="the webhooks")


# --- a delivery's tries, against a real server ---------------------------------------------------
class Receiver:
    """An HTTP server on loopback answering `status` and keeping what it received."""

    def __init__(self, status=204):
        self.status, self.received = status, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def one_delivery(user, url):
    endpoint = services.endpoint_create(client=user, url=url)
    services.fan_out(final_event(user))
    [row] = services.claim_due(10)
    return endpoint, row


def test_a_delivery_is_signed_and_recorded_delivered(client_user, receiver):
    endpoint, row = one_delivery(client_user, receiver.url)
    assert services.record(row, services.send(row)) == "delivered"

    [(headers, body)] = receiver.received
    assert signing.verify(endpoint.secret, headers[signing.HEADER], headers[signing.EVENT_ID_HEADER], body)
    assert json.loads(body) == row.event and headers["Content-Type"] == "application/cloudevents+json"
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 204)


def test_a_claimed_delivery_is_not_claimed_again_while_its_lease_runs(client_user, receiver):
    one_delivery(client_user, receiver.url)
    assert services.claim_due(10) == []


def test_a_failed_try_waits_longer_each_time_and_past_its_budget_the_delivery_is_dead(client_user, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS, settings.WEBHOOK_BACKOFF_SECONDS = 3, 10
    receiver.status = 503
    _, row = one_delivery(client_user, receiver.url)
    waits = []
    for _ in range(2):
        before = timezone.now()
        assert services.record(row, services.send(row)) == "pending"
        row.refresh_from_db()
        waits.append((row.next_attempt_at - before).total_seconds())
        assert row.last_error == "HTTP 503"
    assert 8 <= waits[0] <= 12.5 and 16 <= waits[1] <= 24.5  # 10 s then 20 s, 20% jitter
    assert services.record(row, services.send(row)) == "dead"
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("dead", 3) and len(receiver.received) == 3


def test_a_refused_url_is_dead_at_once_without_a_request(client_user, receiver, settings):
    _, row = one_delivery(client_user, receiver.url)
    settings.PRODUCTION = True  # loopback is refused now
    outcome = services.send(row)
    assert outcome.refused and outcome.error == "refused: the scheme must be https"
    assert services.record(row, outcome) == "dead" and receiver.received == []


def test_an_unreachable_receiver_is_a_failed_try(client_user, receiver):
    url = receiver.url
    receiver.close()
    _, row = one_delivery(client_user, url)
    outcome = services.send(row)
    assert not outcome.delivered and outcome.error == "ConnectionError: [Errno 111] Connection refused"


def test_a_removed_endpoints_pending_deliveries_are_cancelled(client_user, receiver):
    endpoint, row = one_delivery(client_user, receiver.url)
    services.endpoint_remove(endpoint=endpoint)
    assert services.record(row, services.send(row)) == "cancelled"  # the try in flight changes nothing


def test_a_dead_delivery_revives_with_a_fresh_budget_once(client_user, receiver):
    _, row = one_delivery(client_user, receiver.url)
    WebhookDelivery.objects.filter(id=row.id).update(status="dead", attempts=6)
    assert services.delivery_revive(str(row.id))
    assert not services.delivery_revive(str(row.id))  # not dead any more
    assert not services.delivery_revive("not-a-uuid")
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 0)


def test_the_metrics_count_waiting_and_dead_deliveries(client_user, receiver, client):
    _, row = one_delivery(client_user, receiver.url)
    WebhookDelivery.objects.filter(id=row.id).update(created_at=timezone.now() - timedelta(seconds=60))
    _, dead = one_delivery(get_user_model().objects.create(username="dead-end"), receiver.url)
    WebhookDelivery.objects.filter(id=dead.id).update(status="dead")

    text = client.get("/metrics").content.decode()

    assert 'orderhub_webhook_deliveries{status="pending"} 1.0' in text
    assert 'orderhub_webhook_deliveries{status="dead"} 1.0' in text
    [age] = [line.split()[-1] for line in text.splitlines()
             if line.startswith("orderhub_webhook_oldest_pending_age_seconds ")]
    assert float(age) >= 60
