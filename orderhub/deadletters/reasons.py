"""Why a message was dead-lettered. RabbitMQ's x-death header only says "rejected"; the process
that rejects a message notes the reason here (Redis, a week) under the message's key, and the
archiver picks it up. Without a note the archive falls back to RabbitMQ's reason."""
import hashlib

import structlog
from django.core.cache import cache

from orderhub import counters

log = structlog.get_logger(__name__)
KEEP_SECONDS = 7 * 24 * 3600


def message_key(*, headers=None, properties=None, body=b"") -> str:
    """The Celery task id where there is one (it is the envelope's message id), else a digest."""
    headers, properties = headers or {}, properties or {}
    message_id = headers.get("id") or properties.get("correlation_id") or properties.get("message_id")
    if message_id:
        return str(message_id)
    raw = body if isinstance(body, bytes) else str(body).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def note_reason(key, reason):
    try:
        cache.set(f"deadletter-reason:{key}", reason[:2000], KEEP_SECONDS)
    except Exception as exc:  # the note is a courtesy: never let it stop the dead-lettering
        log.warning("could not note the dead-letter reason", key=key, error=repr(exc))


def noted_reason(key):
    try:
        return cache.get(f"deadletter-reason:{key}")
    except Exception:  # the archive still keeps RabbitMQ's own reason
        return None


PARKED_COUNT_KEY = "deadletters:parked"


def parked_count_add():
    """Count a message moved to the parking queue."""
    counters.count(PARKED_COUNT_KEY)


def parked_count() -> int:
    return counters.read(PARKED_COUNT_KEY)
