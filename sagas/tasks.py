"""The orchestrator's Celery tasks: receive replies, relay the outbox. Thin: the engine decides."""
import logging

from celery import shared_task
from celery.exceptions import Reject
from django.conf import settings
from django.db import InterfaceError, OperationalError

from contracts import MalformedMessage, Reply
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
        raise Reject(f"malformed: {exc}", requeue=False) from None
    try:
        return engine.reply_apply(reply)
    except TRANSIENT_DB_ERRORS as exc:
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 30)) from None


# The sweeps run again in a second or two: a lost database connection skips one run, no more
# (it must not fail the task, which would dead-letter a harmless periodic message).
@shared_task(name="saga.tick.relay_outbox", ignore_result=True)
def relay_outbox():
    try:
        published = outbox.relay(older_than=settings.OUTBOX_RELAY_GRACE)
    except TRANSIENT_DB_ERRORS as exc:
        log.warning("outbox relay skipped this run: %r", exc)
        return 0
    if published:
        log.info("outbox relay published %d missed commands", published)
    return published


@shared_task(name="saga.tick.sweep_deadlines", ignore_result=True)
def sweep_deadlines():
    try:
        handled = engine.deadlines_sweep()
    except TRANSIENT_DB_ERRORS as exc:
        log.warning("deadline sweep skipped this run: %r", exc)
        return 0
    if handled:
        log.info("deadline sweep acted on %d steps", handled)
    return handled
