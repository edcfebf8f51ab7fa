"""The transactional outbox: commands are written with the saga state, then published.

`enqueue` writes the row inside the caller's transaction and publishes it right after commit.
`relay` publishes unsent rows; beat runs it as a sweep so a crash between commit and publish
loses nothing. Rows are taken with SELECT ... FOR UPDATE SKIP LOCKED, so two relays (or a relay
and an after-commit publish) never publish the same row at the same time; a row published twice
after a crash is harmless because every worker deduplicates by message id (its inbox).
"""
import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from contracts import Command
from orderhub.bus import publish
from sagas.models import OutboxMessage

log = logging.getLogger(__name__)

# The broker is down or unreachable: no row can be published until it is back.
BROKER_UNREACHABLE = (KombuOperationalError, ConnectionError, TimeoutError, OSError)


def enqueue(command: Command) -> OutboxMessage:
    row = OutboxMessage.objects.create(
        id=command.message_id, message_type=command.type, saga_id=command.saga_id, body=command.to_dict()
    )
    transaction.on_commit(lambda: publish_after_commit([row.id]), robust=True)
    return row


def resend(message_id):
    """Publish an already written command again, same message id (a deadline passed)."""
    OutboxMessage.objects.filter(id=message_id).update(published_at=None)
    transaction.on_commit(lambda: publish_after_commit([message_id]), robust=True)


def publish_after_commit(ids):
    relay(ids=ids)


def relay(*, ids=None, older_than: float | None = None, limit: int = 500) -> int:
    """Publish unsent outbox rows; returns how many were published.

    The broker being unreachable stops the run (every row would fail the same way). A row that
    fails on its own (it can never be published as it is) is marked, logged and put behind the
    others, and the run carries on: one bad row must not hold up the rest."""
    with transaction.atomic():
        rows = OutboxMessage.objects.select_for_update(skip_locked=True).filter(published_at__isnull=True)
        if ids is not None:
            rows = rows.filter(id__in=ids)
        if older_than is not None:
            rows = rows.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than))
        rows = list(rows.order_by("publish_attempts", "created_at")[:limit])
        published = []
        for row in rows:
            try:
                publish(row.message_type, row.body, message_id=str(row.id))
            except BROKER_UNREACHABLE as exc:  # left (with the rest) for the next sweep
                log.warning("outbox publish failed, left for the relay message_id=%s: %r", row.id, exc)
                _note_failure(row, exc)
                break
            except Exception as exc:
                log.exception("outbox row cannot be published, skipped message_id=%s type=%s",
                              row.id, row.message_type[:100])
                _note_failure(row, exc)
                continue
            published.append(row.id)
        if published:
            OutboxMessage.objects.filter(id__in=published).update(published_at=timezone.now())
        return len(published)


def _note_failure(row, exc):
    OutboxMessage.objects.filter(id=row.id).update(
        publish_attempts=F("publish_attempts") + 1, last_error=f"{timezone.now().isoformat()} {exc!r}"[:2000]
    )
