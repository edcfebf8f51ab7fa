"""Endpoints (register, rotate, remove) and deliveries (fan out, send, retry, dead-letter)."""
import json
import random
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

import requests
import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orderhub import events, topology
from orderhub.deadletters.reasons import note_reason
from orderhub.webhooks import addresses, signing
from orderhub.webhooks.models import WebhookDelivery, WebhookEndpoint, new_secret

log = structlog.get_logger(__name__)
QUEUE = "webhooks.events"
TYPES = tuple(events.ORDER_ENDED.values())  # an order's final state (and needs_attention, an operator's turn)
Status = WebhookDelivery.Status


class EndpointRefused(ValueError):
    pass


class TooManyEndpoints(EndpointRefused):
    pass


# --- endpoints ---------------------------------------------------------------------------------
def endpoint_create(*, client, url: str, description: str = "") -> WebhookEndpoint:
    try:
        addresses.check(url)
    except addresses.RefusedURL as exc:
        raise EndpointRefused(str(exc)) from None
    if WebhookEndpoint.objects.filter(client=client, active=True).count() >= settings.WEBHOOK_ENDPOINTS_PER_CLIENT:
        raise TooManyEndpoints(f"at most {settings.WEBHOOK_ENDPOINTS_PER_CLIENT} endpoints per client")
    return WebhookEndpoint.objects.create(client=client, url=url, description=description)


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret; the old one also signs for WEBHOOK_SECRET_OVERLAP_SECONDS, so a receiver can
    move to the new one with no delivery refused."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(id=endpoint.id)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = timezone.now() + timedelta(seconds=settings.WEBHOOK_SECRET_OVERLAP_SECONDS)
        endpoint.secret = new_secret()
        endpoint.save()
    return endpoint


def endpoint_remove(*, endpoint: WebhookEndpoint) -> None:
    """No more deliveries to it: the pending ones are cancelled; the history stays."""
    with transaction.atomic():
        WebhookEndpoint.objects.filter(id=endpoint.id).update(active=False)
        WebhookDelivery.objects.filter(endpoint=endpoint, status=Status.PENDING).update(status=Status.CANCELLED)


def signing_secrets(endpoint: WebhookEndpoint, now=None) -> list[str]:
    now = now or timezone.now()
    keep_previous = endpoint.previous_secret and endpoint.previous_secret_expires_at and \
        endpoint.previous_secret_expires_at > now
    return [endpoint.secret, endpoint.previous_secret] if keep_previous else [endpoint.secret]


# --- deliveries --------------------------------------------------------------------------------
def fan_out(event: dict) -> int:
    """One pending delivery of `event` per active endpoint of its order's client; a second time, none."""
    return fan_out_many([event])


def fan_out_many(batch: list[dict]) -> int:
    """fan_out for each event of a batch, in one transaction: one read of the endpoints, one of the
    deliveries already written, one insert. Returns how many deliveries it wrote."""
    with transaction.atomic():
        endpoints = {}
        for endpoint in WebhookEndpoint.objects.filter(client_id__in={event["data"]["client_id"] for event in batch},
                                                       active=True):
            endpoints.setdefault(endpoint.client_id, []).append(endpoint)
        wanted = [(endpoint, event) for event in batch for endpoint in endpoints.get(event["data"]["client_id"], ())]
        if not wanted:
            return 0
        written = set(WebhookDelivery.objects.filter(event_id__in={event["id"] for _, event in wanted})
                      .values_list("endpoint_id", "event_id"))
        now, rows = timezone.now(), {}
        for endpoint, event in wanted:
            key = (endpoint.id, uuid.UUID(str(event["id"])))
            if key not in written and key not in rows:
                rows[key] = WebhookDelivery(endpoint=endpoint, event_id=event["id"], event_type=event["type"],
                                            order_id=event["data"]["order_id"], event=event, next_attempt_at=now)
        # A second webhooks process that wrote one of them meanwhile: that row stays as it is.
        WebhookDelivery.objects.bulk_create(rows.values(), ignore_conflicts=True)
    return len(rows)


def delivery_revive(delivery_id) -> bool:
    """A dead delivery (its dead letter replayed by an operator) gets a fresh budget. False when
    there is no such delivery, or it is not dead."""
    try:
        delivery_id = uuid.UUID(str(delivery_id))
    except ValueError:
        return False
    return bool(WebhookDelivery.objects.filter(id=delivery_id, status=Status.DEAD).update(
        status=Status.PENDING, attempts=0, next_attempt_at=timezone.now(), dead_lettered_at=None))


def claim_due(limit: int) -> list[WebhookDelivery]:
    """Take up to `limit` due deliveries. Each is leased (next_attempt_at pushed past the request's
    timeout) so that another sender leaves it alone, and it is due again if this one dies."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30)
    with transaction.atomic():
        rows = list(WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                    .select_related("endpoint").filter(status=Status.PENDING, next_attempt_at__lte=now)
                    .order_by("next_attempt_at")[:limit])
        WebhookDelivery.objects.filter(id__in=[row.id for row in rows]).update(next_attempt_at=lease)
    return rows


@dataclass
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str = ""
    refused: bool = False  # the URL may not be used at all: no point in trying again


def send(delivery: WebhookDelivery, session: requests.Session | None = None) -> Outcome:
    """POST the event to the endpoint, signed. Touches no database (runs in a pool of threads)."""
    endpoint = delivery.endpoint
    try:
        addresses.check(endpoint.url)
    except addresses.RefusedURL as exc:
        return Outcome(False, error=f"refused: {exc}", refused=True)
    body = json.dumps(delivery.event, separators=(",", ":")).encode()
    event_id = str(delivery.event_id)
    headers = {
        "Content-Type": events.CONTENT_TYPE,
        "User-Agent": "OrderHub-Webhooks/1",
        signing.HEADER: signing.sign(signing_secrets(endpoint), event_id, body),
        signing.EVENT_ID_HEADER: event_id,
        "OrderHub-Event-Type": delivery.event_type,
        "OrderHub-Delivery-Id": str(delivery.id),
        "OrderHub-Delivery-Attempt": str(delivery.attempts + 1),
    }
    try:
        response = (session or requests).post(endpoint.url, data=body, headers=headers, allow_redirects=False,
                                              timeout=(min(3.0, settings.WEBHOOK_TIMEOUT_SECONDS),
                                                       settings.WEBHOOK_TIMEOUT_SECONDS))
    except requests.RequestException as exc:
        return Outcome(False, error=_why(exc))
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code)
    return Outcome(False, response.status_code, f"HTTP {response.status_code}")


def _why(exc: requests.RequestException) -> str:
    """What went wrong, short enough for an operator's list: the OS's own words where it said some
    ("[Errno 111] Connection refused"), rather than urllib3's nested retelling."""
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(exc))
    return f"{type(exc).__name__}: {found.group(0) if found else exc}"[:500]


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: exponential, capped, with jitter."""
    delay = min(settings.WEBHOOK_BACKOFF_MAX_SECONDS, settings.WEBHOOK_BACKOFF_SECONDS * 2 ** (attempts - 1))
    return delay * random.uniform(0.8, 1.2)


def record(delivery: WebhookDelivery, outcome: Outcome) -> str:
    """Write what a try gave; the delivery's new status."""
    now = timezone.now()
    attempts = delivery.attempts + 1
    changes = {"attempts": attempts, "last_status_code": outcome.status_code, "last_error": outcome.error}
    if outcome.delivered:
        changes |= {"status": Status.DELIVERED, "delivered_at": now}
    elif outcome.refused or attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        changes |= {"status": Status.DEAD}
    else:
        changes |= {"next_attempt_at": now + timedelta(seconds=backoff(attempts))}
    # Only while it is still this try's to write (an endpoint removed meanwhile cancelled it).
    if not WebhookDelivery.objects.filter(id=delivery.id, status=Status.PENDING).update(**changes):
        return WebhookDelivery.objects.filter(id=delivery.id).values_list("status", flat=True).first()
    status = changes.get("status", Status.PENDING)
    log_event = {"delivered": "webhook delivered", "dead": "webhook delivery dead"}.get(status, "webhook delivery failed")
    (log.warning if status != Status.DELIVERED else log.info)(
        log_event, delivery_id=str(delivery.id), event_type=delivery.event_type, order_id=str(delivery.order_id),
        attempt=attempts, status_code=outcome.status_code, error=outcome.error or None)
    return status


def dead_letter_pending(limit=50) -> int:
    """Publish each dead delivery not dead-lettered yet onto webhooks.events.dlq, where the archiver
    keeps it with its reason for operators (and a replay revives it). Idempotent: a delivery is
    marked once its letter is confirmed; one published twice is archived once (same key)."""
    from orderhub.celery import app

    rows = list(WebhookDelivery.objects.select_related("endpoint").filter(status=Status.DEAD,
                                                                          dead_lettered_at__isnull=True)[:limit])
    if not rows:
        return 0
    topology.ensure_declared(app)
    with app.producer_or_acquire() as producer:
        for row in rows:
            key = str(row.id)
            note_reason(key, f"webhook undeliverable after {row.attempts} attempts to {row.endpoint.url}: "
                             f"{row.last_error or 'no answer'}")
            producer.publish(
                json.dumps(row.event).encode(), exchange=topology.DEAD_LETTER_EXCHANGE, routing_key=QUEUE,
                correlation_id=key, content_type=events.CONTENT_TYPE, content_encoding="utf-8", delivery_mode=2,
                headers={"task": f"webhook:{row.event_type}", "x-webhook-endpoint": str(row.endpoint_id)},
                retry=True, retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
            )
            WebhookDelivery.objects.filter(id=row.id).update(dead_lettered_at=timezone.now())
    return len(rows)
