"""The orchestrator's Celery tasks: receive replies, relay the outbox. Thin: the engine decides."""
import uuid
from datetime import datetime

import structlog
from celery import shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.utils import timezone

from contracts import MalformedMessage, Reply
from orderhub.deadletters.reasons import note_reason
from orderhub import batches, bus, delivery, health, topology
from orderhub.topology import DEADLINES_DUE_TYPE, REPLY_TYPE
from sagas import engine, outbox

log = structlog.get_logger(__name__)

TRANSIENT_DB_ERRORS = batches.TRANSIENT_DB_ERRORS


@shared_task(name=REPLY_TYPE, bind=True, max_retries=None)
def receive_reply(self, body):
    """One reply per task: how saga.replies is consumed with ORDERHUB_REPLY_BATCH=0. Otherwise the
    orchestrator applies replies in batches on a consumer of its own (sagas/consumer.py)."""
    try:
        reply = Reply.from_dict(body)
    except MalformedMessage as exc:
        log.error("malformed reply dead-lettered", why=str(exc))
        note_reason(self.request.id, f"malformed: {exc}")
        raise Reject(f"malformed: {exc}", requeue=False) from None
    try:
        outcome = engine.reply_apply(reply)
    except TRANSIENT_DB_ERRORS as exc:
        log.warning("reply not applied: the database connection was lost; retried", retry=self.request.retries + 1,
                    error=repr(exc))
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 30),
                         argsrepr=f"[<{REPLY_TYPE} body withheld>]", kwargsrepr="{}") from None
    except engine.DefinitionNotLoaded as exc:
        # An orchestrator of an older release, while a newer one's sagas are in flight (docs/upgrading.md,
        # Upgrading): the reply waits in the archive, to be replayed once a release that loads
        # the version runs.
        log.error("reply to a saga of a definition version not loaded, dead-lettered", why=str(exc))
        note_reason(self.request.id, f"unreadable version: {exc}")
        raise Reject(f"unreadable version: {exc}", requeue=False) from None
    if outcome == "unknown":
        why = unknown_saga_reason(reply)
        log.error("reply for an unknown saga dead-lettered", saga_id=reply.saga_id, step=reply.step)
        note_reason(self.request.id, why)
        raise Reject(why, requeue=False)
    return outcome


def unknown_saga_reason(reply) -> str:
    """Why a reply for no saga is dead-lettered: the databases were restored from a backup taken
    before it started (docs/operations.md, Backup and restore). Kept for an operator, never applied."""
    return (f"unknown saga: no saga {reply.saga_id} in this database (restored from a backup taken before "
            f"it started?); a {reply.outcome} reply to {reply.step}")


def _sweep(name, run):
    """The sweeps run again in a second or two: a lost database connection skips one run, no more
    (it must not fail the task, which would dead-letter a harmless periodic message)."""
    try:
        done = run()
    except TRANSIENT_DB_ERRORS as exc:
        log.warning("sweep skipped this run", sweep=name, error=repr(exc))
        return 0
    if done:
        log.info("sweep acted", sweep=name, rows=done)
    return done


@shared_task(name="saga.tick.relay_outbox", ignore_result=True)
def relay_outbox():
    return _sweep("outbox relay", lambda: outbox.relay(older_than=settings.OUTBOX_RELAY_GRACE))


@shared_task(name="saga.tick.purge", ignore_result=True)
def purge_expired():
    """What has outlived its retention (orderhub/retention.py), in short batches."""
    from orderhub import retention

    return _sweep("retention purge", lambda: sum(retention.purge().values()))


@shared_task(name="saga.tick.sweep_deadlines", ignore_result=True)
def sweep_deadlines():
    """Beat's tick does not sweep: it queues a marker into saga.replies, behind every reply already
    waiting there, and the sweep runs when the marker comes out (`deadlines_due`). So a reply held
    up in our own queue is applied before its deadline is judged."""
    health.note_tick()
    try:
        bus.publish(DEADLINES_DUE_TYPE, {"queued_at": timezone.now().isoformat()}, message_id=str(uuid.uuid4()),
                    routing_key=REPLY_TYPE)
    except outbox.BROKER_UNREACHABLE as exc:
        log.warning("deadline sweep marker not queued this time", error=repr(exc))


@shared_task(name=DEADLINES_DUE_TYPE, bind=True, ignore_result=True)
def deadlines_due(self, body):
    try:
        due_before = marker_due_before(body)
    except ValueError as exc:
        log.error("malformed deadline sweep marker dead-lettered", why=str(exc))
        note_reason(self.request.id, str(exc))
        raise Reject(str(exc), requeue=False) from None
    return sweep_due(due_before)


def marker_due_before(body) -> datetime:
    """When a deadline sweep marker was queued; ValueError (the reason it is dead-lettered) if it
    does not say."""
    queued_at = body.get("queued_at") if isinstance(body, dict) else None
    try:
        due_before = datetime.fromisoformat(queued_at)
        if due_before.tzinfo is None:
            raise ValueError("no time zone")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed: a deadline sweep marker needs queued_at, an ISO time with a zone ({exc})") from None
    return due_before


def sweep_due(due_before):
    return _sweep("deadline sweep", lambda: engine.deadlines_sweep(due_before=due_before, backlog=participant_backlog()))


def participant_backlog():
    """For one sweep run: (message type, message id, busy_grace) -> why the command's deadline
    should be put off, or what was seen when it stands (a dict with `stands`; engine._on_deadline
    records it) (orderhub/delivery.py): the participant is retrying it, or has answered it (the
    reply is in our own queue, behind the sweep's marker), or took it less than `busy_grace`
    seconds (the step's deadline) ago, or nobody holds it and its participant's queue holds
    messages, the command among them. A queue's depth is asked of RabbitMQ once per run; when
    RabbitMQ or Redis cannot be asked, the deadline stands."""
    depths = {}

    def backlog(message_type, message_id, busy_grace=0.0):
        queue = topology.command_queue(message_type)
        if queue is None:
            return None
        held = delivery.state(message_id)
        if held in (delivery.RETRYING, delivery.ANSWERED, delivery.QUEUED):
            return {"participant": held}
        if held == delivery.BUSY:
            busy = delivery.busy_for(message_id)
            if busy is not None and busy < busy_grace:
                return {"participant": "busy", "busy_s": round(busy, 1)}
            return {"stands": "participant busy", "busy_s": None if busy is None else round(busy, 1)}
        if held is not None:
            return {"stands": "the lease could not be read"}
        if queue not in depths:
            try:
                depths[queue] = bus.queue_backlog(queue)
            except Exception as exc:
                log.warning("could not read a queue's backlog", queue=queue, error=repr(exc))
                depths[queue] = None
        if depths[queue]:
            return {"queue_backlog": depths[queue]}
        if delivery.in_hand(queue):
            return {"participant": "batch in hand", "queue_backlog": depths[queue]}
        return {"stands": "nobody holds it" + ("" if depths[queue] is not None else "; queue depth unknown"),
                "queue_backlog": depths[queue]}

    return backlog
