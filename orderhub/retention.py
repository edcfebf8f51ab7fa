"""Retention: what is kept only for a while is purged, in small batches, by a beat tick every
RETENTION_INTERVAL seconds (and `manage.py purge`). Each batch is one short transaction that
deletes at most RETENTION_BATCH rows by primary key, so no hot table is locked for long; a run
stops after RETENTION_RUN_SECONDS and the next tick carries on.

What goes, and after how long (settings, days; docs/operations.md, Configuration):
- published outbox rows (RETENTION_OUTBOX_DAYS, after publishing);
- the events (the timeline) of sagas that ended (RETENTION_SAGA_EVENTS_DAYS after the end);
  the saga and its steps stay;
- dead letters an operator replayed or discarded (RETENTION_DEAD_LETTER_DAYS); an archived one,
  still waiting for a decision, is never purged;
- each domain's inbox rows (RETENTION_INBOX_DAYS): the memory that makes a redelivered command a
  no-op, so it is kept at least as long as a dead letter can still be replayed (settings check);
- webhook deliveries delivered or cancelled (RETENTION_WEBHOOK_DAYS after they were written); a
  pending or dead one stays;
- idempotency keys of orders (RETENTION_IDEMPOTENCY_KEY_DAYS): the order stays, a replay of its
  key after that is a new order.
"""
import time
from datetime import timedelta

import structlog
from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone

log = structlog.get_logger(__name__)


def _targets():
    """(name, database, queryset of what may go now, action) for every kind of row."""
    from orderhub.deadletters.models import DeadLetter
    from orderhub.orders.models import Order
    from orderhub.webhooks.models import WebhookDelivery
    from sagas.models import OutboxMessage, SagaEvent

    now = timezone.now()

    def days(setting):
        return now - timedelta(days=getattr(settings, setting))

    yield ("outbox", "default", OutboxMessage.objects.filter(published_at__lt=days("RETENTION_OUTBOX_DAYS")),
           "delete")
    yield ("saga_events", "default",
           SagaEvent.objects.filter(saga__ended_at__lt=days("RETENTION_SAGA_EVENTS_DAYS")), "delete")
    yield ("dead_letters", "default",
           DeadLetter.objects.filter(status__in=[DeadLetter.Status.REPLAYED, DeadLetter.Status.DISCARDED],
                                     last_seen__lt=days("RETENTION_DEAD_LETTER_DAYS")), "delete")
    yield ("webhook_deliveries", "default",
           WebhookDelivery.objects.filter(status__in=[WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.CANCELLED],
                                          created_at__lt=days("RETENTION_WEBHOOK_DAYS")), "delete")
    yield ("idempotency_keys", "default",
           Order.objects.filter(idempotency_key__isnull=False, created_at__lt=days("RETENTION_IDEMPOTENCY_KEY_DAYS")),
           "forget_key")
    for domain in settings.SERVICE_DATABASES:
        inbox = apps.get_model(domain, "Inbox")
        yield (f"{domain}_inbox", domain,
               inbox.objects.using(domain).filter(received_at__lt=days("RETENTION_INBOX_DAYS")), "delete")


def _batch(database, queryset, action, size) -> int:
    with transaction.atomic(using=database):
        keys = list(queryset.using(database).order_by().values_list("pk", flat=True)[:size])
        if not keys:
            return 0
        rows = queryset.model.objects.using(database).filter(pk__in=keys)
        if action == "forget_key":
            return rows.update(idempotency_key=None, request_fingerprint="")
        # By key; none of these rows has dependents, so Django deletes them in one statement.
        return rows.delete()[0]


def purge(*, batch: int | None = None, budget: float | None = None, dry_run=False) -> dict[str, int]:
    """Purge what has outlived its retention; returns rows purged (or, dry, that would be) by kind."""
    size = batch or settings.RETENTION_BATCH
    deadline = time.monotonic() + (budget if budget is not None else settings.RETENTION_RUN_SECONDS)
    done = {}
    for name, database, queryset, action in _targets():
        if dry_run:
            done[name] = queryset.using(database).count()
            continue
        done[name] = 0
        while time.monotonic() < deadline:
            n = _batch(database, queryset, action, size)
            done[name] += n
            if n < size:
                break
    if any(done.values()) and not dry_run:
        log.info("retention purge", **done)
    return done
