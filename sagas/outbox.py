"""The transactional outbox: commands are written with the saga state, then published.

`enqueue` writes the row inside the caller's transaction and publishes it right after commit.
`relay` publishes unsent rows; beat runs it as a sweep so a crash between commit and publish
loses nothing. Rows are taken with SELECT ... FOR UPDATE SKIP LOCKED, so two relays (or a relay
and an after-commit publish) never publish the same row at the same time; a row published twice
after a crash is harmless because every worker deduplicates by message id (its inbox).
"""
import os
import queue
import threading
import time
from datetime import timedelta

import structlog
from django.db import close_old_connections, connections, router, transaction
from django.db.models import F
from django.utils import timezone

from contracts import Command
from orderhub import confirms, tracing
from sagas.models import OutboxMessage

log = structlog.get_logger(__name__)

# The broker is down or unreachable: no row can be published until it is back.
BROKER_UNREACHABLE = confirms.BROKER_UNREACHABLE
ConfirmedBatch = confirms.ConfirmedBatch
_confirmed_batch = confirms.confirmed_batch


def enqueue(command: Command) -> OutboxMessage:
    return write(OutboxMessage(id=command.message_id, message_type=command.type, saga_id=command.saga_id,
                               body=command.to_dict()))


def write(row: OutboxMessage) -> OutboxMessage:
    """Write a row in the caller's transaction, published once it commits. Within `collected()`
    (a batch of replies: sagas/engine.py), the rows are written together, in one insert, when
    the batch flushes, and published together."""
    rows = getattr(_collecting, "rows", None)
    if rows is not None:
        rows.append(row)
        return row
    row.save(force_insert=True)
    transaction.on_commit(lambda: publish_committed([(row.id, row.message_type, row.body)]), robust=True)
    return row


_collecting = threading.local()


class collected:
    """`with outbox.collected(): ...` holds the rows written inside for one insert, made by
    `flush()` (and at the end, unless an error is on its way out, which rolls them back anyway)."""

    def __enter__(self):
        self.outer = getattr(_collecting, "rows", None)
        _collecting.rows = []
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                flush()
        finally:
            _collecting.rows = self.outer
        return False


def flush():
    """Insert the rows collected so far (one statement) and publish them together after commit."""
    rows = getattr(_collecting, "rows", None)
    if not rows:
        return
    _collecting.rows = []
    OutboxMessage.objects.bulk_create(rows)
    transaction.on_commit(lambda: publish_committed([(row.id, row.message_type, row.body) for row in rows]),
                          robust=True)


def resend(message_id):
    """Publish an already written command again, same message id (a deadline passed)."""
    OutboxMessage.objects.filter(id=message_id).update(published_at=None)
    transaction.on_commit(lambda: publish_after_commit([message_id]), robust=True)


def publish_after_commit(ids):
    relay(ids=ids, publisher="after_commit")


def publish_committed(rows):
    """Publish rows this process has just committed, from what it wrote (no read back, no lock),
    then mark them published. The relay sweep leaves rows younger than its grace to this; if the
    two ever publish the same row, the worker's inbox makes the copy harmless."""
    if _background is not None:
        _background.submit(rows)
    else:
        _publish_rows(rows, publisher="after_commit")


def _publish_rows(rows, *, publisher) -> int:
    """Publish (message id, type, body) rows in order and mark those published; returns how many.
    The rows are published on a channel in confirm mode without waiting, and the broker's confirms
    are awaited once for them all (ConfirmedBatch). The broker being unreachable stops the run
    (every row would fail the same way); a row the broker refuses (nack) or does not confirm in
    time is left to the relay. A row that fails on its own (it can never be published as it is)
    is marked, logged and put behind the others, and the run carries on: one bad row must not hold
    up the rest."""
    batch = _confirmed_batch()
    for message_id, message_type, body in rows:
        try:
            # Under the context stored with the row: a publish seconds later, by another process,
            # still joins the order's trace (orderhub/tracing.py).
            with tracing.span(f"outbox publish {message_type}", body.get("trace") if isinstance(body, dict) else None,
                              kind="producer", **{"messaging.message.id": str(message_id),
                                                  "orderhub.publisher": publisher}):
                batch.send(message_id, message_type, body)
        except BROKER_UNREACHABLE as exc:  # left (with the rest) for the relay sweep
            log.warning("outbox publish failed, left for the relay", message_id=str(message_id), error=repr(exc))
            _note_failure(message_id, exc)
            break
        except Exception as exc:
            log.exception("outbox row cannot be published, left for the relay", message_id=str(message_id),
                          type=str(message_type)[:100])
            _note_failure(message_id, exc)
            continue
    published, refused = batch.wait()
    for message_id, why in refused:
        log.warning("outbox publish not confirmed, left for the relay", message_id=str(message_id), why=why)
        _note_failure(message_id, why)
    if published:
        _mark_published(published)
    return len(published)


def _mark_published(ids):
    """Mark rows published without waiting for the mark's WAL flush (synchronous_commit off, this
    transaction only): the row itself was made durable by the transaction that wrote it, and a mark
    lost in a crash only lets the relay publish the row again, which every inbox makes harmless.
    It saved one fsync per published message (make bench: WAL fsyncs per saga)."""
    using = router.db_for_write(OutboxMessage)
    with transaction.atomic(using=using):
        with connections[using].cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        OutboxMessage.objects.filter(id__in=ids, published_at__isnull=True).update(published_at=timezone.now())


class BackgroundPublisher:
    """Publishes freshly committed rows from a thread of its own, so the caller never waits on the
    broker. The API uses it (orderhub/wsgi.py): a broker that blocks publishers (a memory or disk
    alarm) or is gone must not hold up `POST /api/orders/`, whose order is safe in the outbox
    either way. Rows it cannot publish, or that do not fit its queue, are left to the relay sweep."""

    def __init__(self, maxsize=10_000, batch=100):
        self._queue = queue.Queue(maxsize)
        self._batch = batch
        self._lock = threading.Lock()
        self._pid = None  # a forked child (a gunicorn worker) starts its own thread

    def submit(self, rows):
        """rows: (message id, message type, body) of rows just committed."""
        self._ensure_running()
        try:
            self._queue.put_nowait(list(rows))
        except queue.Full:
            log.warning("background publisher full; rows left to the relay", rows=len(rows))

    def _ensure_running(self):
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.Queue(self._queue.maxsize)
                threading.Thread(target=self._run, name="outbox-publisher", daemon=True).start()
                self._pid = os.getpid()

    def _run(self):
        while True:
            rows = self._queue.get()
            taken = 1
            while len(rows) < self._batch:
                try:
                    rows.extend(self._queue.get_nowait())
                    taken += 1
                except queue.Empty:
                    break
            try:
                _publish_rows(rows, publisher="after_commit")
            except Exception:
                log.exception("background publish failed; rows left to the relay", rows=len(rows))
                # The thread's database connection may be the cause (a restarted PostgreSQL):
                # drop it if it is broken, so the next batch connects anew. (Not before every
                # batch: that would health-check the connection, a round trip per batch.)
                close_old_connections()
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for every submitted row to be published (or given up on, to
        the relay); True when none is left. A process that stops calls it first."""
        deadline = time.monotonic() + timeout
        while self._pid == os.getpid() and self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


_background: BackgroundPublisher | None = None


def publish_in_background():
    """Make after-commit publishes of this process go through a BackgroundPublisher."""
    global _background
    _background = _background or BackgroundPublisher()


def flush_background(timeout: float = 5.0) -> bool:
    """Publish what the background publisher still holds before the process stops (what it cannot
    publish in time is the relay's, as after a crash)."""
    return _background is None or _background.flush(timeout)


def relay(*, ids=None, older_than: float | None = None, limit: int = 500, publisher="relay") -> int:
    """Publish unsent outbox rows, taken with SKIP LOCKED (see `_publish_rows`); returns how many."""
    with transaction.atomic():
        rows = OutboxMessage.objects.select_for_update(skip_locked=True).filter(published_at__isnull=True)
        if ids is not None:
            rows = rows.filter(id__in=ids)
        if older_than is not None:
            rows = rows.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than))
        rows = rows.order_by("publish_attempts", "created_at")[:limit]
        return _publish_rows([(row.id, row.message_type, row.body) for row in rows], publisher=publisher)


def _note_failure(message_id, exc):
    OutboxMessage.objects.filter(id=message_id).update(
        publish_attempts=F("publish_attempts") + 1, last_error=f"{timezone.now().isoformat()} {exc!r}"[:2000]
    )
