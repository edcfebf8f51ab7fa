"""Archive, replay and discard dead letters."""
import base64
import hashlib
import math

import structlog
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu import Producer

from orderhub.deadletters.models import DeadLetter
from orderhub import process_metrics
from orderhub.deadletters.reasons import message_key, noted_reason

log = structlog.get_logger(__name__)

# Headers RabbitMQ adds when it dead-letters; a replayed message starts without them.
DEATH_HEADERS = ("x-death", "x-first-death-queue", "x-first-death-reason", "x-first-death-exchange",
                 "x-last-death-queue", "x-last-death-reason", "x-last-death-exchange", "x-delivery-count")


def clean_text(value: str) -> str:
    """Text PostgreSQL can store: no NUL characters, no lone surrogates."""
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _jsonable(value):
    if isinstance(value, bytes):
        return clean_text(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {clean_text(str(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return clean_text(str(value))


def body_as_text(body: bytes) -> tuple[str, bool]:
    """The body as stored: UTF-8 text when it is clean text, else base64 (flagged)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        return base64.b64encode(body).decode(), True
    return text, False


def _death(headers, queue):
    deaths = [d for d in headers.get("x-death") or [] if d.get("queue") == queue] or headers.get("x-death") or []
    if not deaths:
        return queue, "rejected", 1
    first = deaths[0]
    return first.get("queue", queue), first.get("reason", "rejected"), sum(int(d.get("count", 1)) for d in deaths)


def deadletter_archive(*, body: bytes, headers: dict, properties: dict, dlq: str) -> DeadLetter:
    """Keep one dead-lettered message. The same message dying again in the same queue updates
    its row (death count, reason) instead of adding one."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    original_queue = dlq.removesuffix(".dlq")
    queue, rabbit_reason, deaths = _death(headers, original_queue)
    key = message_key(headers=headers, properties=properties, body=body)
    reason = clean_text(noted_reason(key) or f"rabbitmq: {rabbit_reason}")
    text, encoded = body_as_text(body)
    # A key that does not fit its column is stored as a digest of itself.
    stored_key = clean_text(key) if len(key) <= 100 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    with transaction.atomic():
        letter, created = DeadLetter.objects.select_for_update().get_or_create(
            message_key=stored_key,
            queue=clean_text(str(queue))[:200],
            defaults=dict(
                message_type=clean_text(str(headers.get("task") or ""))[:200], reason=reason, death_count=deaths,
                headers=_jsonable(headers), properties=_jsonable(properties), body=text, body_base64=encoded,
            ),
        )
        if not created:
            letter.reason, letter.death_count = reason, max(deaths, letter.death_count + 1)
            letter.headers, letter.status = _jsonable(headers), DeadLetter.Status.ARCHIVED
            letter.save()
    log.info("dead letter archived", id=letter.id, queue=str(queue), key=key, reason=reason)
    from orderhub import topology

    known = queue if queue in topology.QUEUE_BINDINGS or queue in topology.EVENT_SUBSCRIBERS else "other"  # a forged x-death must not mint labels
    transaction.on_commit(lambda: process_metrics.DEAD_LETTERS.labels(known, process_metrics.reason_kind(reason)).inc())
    return letter


def deadletter_replay(*, letter: DeadLetter, connection) -> DeadLetter:
    """Publish the message again, as it was, to the queue it died in. Idempotent with the inbox:
    a command that had its effect already has none the second time."""
    body = base64.b64decode(letter.body) if letter.body_base64 else letter.body.encode("utf-8")
    headers = {k: v for k, v in letter.headers.items() if k not in DEATH_HEADERS}
    properties = letter.properties
    producer = Producer(connection.channel())
    producer.publish(
        body,
        exchange="",  # the default exchange routes by queue name: straight back to the original queue
        routing_key=letter.queue,
        headers=headers,
        content_type=properties.get("content_type") or "application/octet-stream",
        content_encoding=properties.get("content_encoding") or "binary",
        correlation_id=properties.get("correlation_id"),
        delivery_mode=2,
        retry=True,
    )
    DeadLetter.objects.filter(id=letter.id).update(
        status=DeadLetter.Status.REPLAYED, replayed_at=timezone.now(), replay_count=F("replay_count") + 1
    )
    letter.refresh_from_db()
    return letter


def deadletter_discard(*, letter: DeadLetter) -> DeadLetter:
    """Mark it dealt with; it stays in the archive with when it was last seen (not touched here)."""
    DeadLetter.objects.filter(id=letter.id).update(status=DeadLetter.Status.DISCARDED, discarded_at=timezone.now())
    letter.refresh_from_db()
    return letter
