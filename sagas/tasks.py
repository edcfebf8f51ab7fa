"""The orchestrator's Celery tasks: receive replies, relay the outbox. Thin: the engine decides."""
import logging

from celery import shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.db import InterfaceError, OperationalError

from contracts import MalformedMessage, Reply
from orderhub.deadletters.reasons import note_reason
from orderhub.topology import REPLY_TYPE
from sagas import engine, outbox

log = logging.getLogger(__name__)

# Lost database connections (a restarted PostgreSQL, a killed backend) are transient.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


@shared_task(name=REPLY_TYPE, bind=True, max_retries=None)
def receive_reply(self, body):
    try:
        reply = Reply.from_dict(body)
    except MalformedMessage as exc:
        log.error("malformed reply dead-lettered: %s", exc)
        note_reason(self.request.id, f"malformed: {exc}")
        raise Reject(f"malformed: {exc}", requeue=False) from None
    try:
        return engine.reply_apply(reply)
    except TRANSIENT_DB_ERRORS as exc:
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 30)) from None


def _sweep(name, run):
    """The sweeps run again in a second or two: a lost database connection skips one run, no more
    (it must not fail the task, which would dead-letter a harmless periodic message)."""
    try:
        done = run()
    except TRANSIENT_DB_ERRORS as exc:
        log.warning("%s skipped this run: %r", name, exc)
        return 0
    if done:
        log.info("%s acted on %d rows", name, done)
    return done


@shared_task(name="saga.tick.relay_outbox", ignore_result=True)
def relay_outbox():
    return _sweep("outbox relay", lambda: outbox.relay(older_than=settings.OUTBOX_RELAY_GRACE))


@shared_task(name="saga.tick.sweep_deadlines", ignore_result=True)
def sweep_deadlines():
    return _sweep("deadline sweep", engine.deadlines_sweep)
