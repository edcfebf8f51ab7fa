"""What every domain worker shares: the inbox, the handler registry, the task wrapper, replies.

A command is handled as one local transaction in the domain's database together with an inbox
row keyed by the command's message id. A redelivered command finds its inbox row and re-sends the
stored reply without doing the work again. The reply is published (with confirms) after commit and
the command is acked only after that (late acks), so a crash anywhere loses nothing.
"""
from __future__ import annotations

import logging
import uuid
from typing import Callable

from celery import shared_task
from celery.exceptions import Reject
from django.apps import apps
from django.db import IntegrityError, InterfaceError, OperationalError, connections, models, transaction
from kombu.exceptions import OperationalError as KombuOperationalError

from contracts import Command, MalformedMessage, Reply
from orderhub.bus import publish
from orderhub.deadletters.reasons import note_reason
from orderhub.topology import REPLY_TYPE

log = logging.getLogger(__name__)


class BusinessRejection(Exception):
    """A rule of the domain says no (out of stock, declined). Answered with a failure reply."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TransientError(Exception):
    """Worth trying again later: a timeout, a reset connection, a flaky provider."""


# Lost connections and a concurrent insert of the same business key resolve on a retry.
TRANSIENT_ERRORS = (TransientError, OperationalError, InterfaceError, IntegrityError)
BROKER_ERRORS = (KombuOperationalError, ConnectionError, TimeoutError)


class InboxMessage(models.Model):
    """One row per command handled, holding the reply that was sent for it."""

    message_id = models.UUIDField(primary_key=True)
    message_type = models.CharField(max_length=100)
    saga_id = models.UUIDField(db_index=True)
    attempt = models.PositiveIntegerField(default=1)
    reply = models.JSONField(null=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


_HANDLERS: dict[str, Callable[[Command], Reply]] = {}


def handles(message_type: str):
    """Register the function that handles one command type. It returns cmd.succeed()/cmd.fail()
    or raises BusinessRejection; it runs inside the domain's transaction."""

    def register(handler):
        if message_type in _HANDLERS:
            raise ValueError(f"{message_type} already has a handler")
        _HANDLERS[message_type] = handler
        return handler

    return register


def domain_of(message_type: str) -> str:
    return message_type.split(".", 1)[0]


def handle(command: Command) -> Reply | None:
    """Deduplicate and handle one command; returns the reply to send (already durable), or None
    when another worker is handling the same message at this moment."""
    handler = _HANDLERS.get(command.type)
    if handler is None:
        raise MalformedMessage(f"no handler for {command.type}")
    database = domain_of(command.type)
    inbox_model = apps.get_model(database, "Inbox")
    with transaction.atomic(using=database):
        if not _claim(database, command.message_id):
            return None
        try:
            with transaction.atomic(using=database):
                inbox = inbox_model.objects.using(database).create(
                    message_id=command.message_id,
                    message_type=command.type,
                    saga_id=command.saga_id,
                    attempt=command.attempt,
                )
        except IntegrityError:
            # Seen before (a redelivery, a resend, a replay): the stored reply, and nothing else.
            stored = inbox_model.objects.using(database).get(message_id=command.message_id)
            log.info("duplicate command, re-sending stored reply message_id=%s", command.message_id)
            return Reply.from_dict(stored.reply)
        try:
            with transaction.atomic(using=database):
                reply = handler(command)
        except BusinessRejection as rejection:
            reply = command.fail(rejection.reason, rejection.detail)
        inbox.reply = reply.to_dict()
        inbox.save(using=database, update_fields=["reply"])
    return reply


def _claim(database, message_id) -> bool:
    """Take the message id for this transaction. False when another worker is handling the same
    message right now (a resend or a redelivery racing the original): it will reply, and waiting
    on its inbox row would only tie this worker up for as long as the first one takes."""
    key = int.from_bytes(uuid.UUID(message_id).bytes[:8], "big", signed=True)
    with connections[database].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return cursor.fetchone()[0]


def send_reply(reply: Reply):
    publish(REPLY_TYPE, reply.to_dict(), message_id=reply.message_id)


# Infrastructure faults (a lost database connection, a broker hiccup) are retried at least this
# many times whatever the step's policy: they say nothing about the command.
INFRASTRUCTURE_ATTEMPTS = 10


def run_command(task, body):
    """The body of every command task: handle, reply, and sort failures into their three kinds.

    - malformed: dead-lettered at once with its reason, never retried;
    - transient: retried under the step's policy, the delay held by RabbitMQ (native delayed
      delivery); once the attempts are spent the step fails (a failure reply) and the message is
      dead-lettered with its reason;
    - anything else is a bug: the task fails and Celery rejects the message to the dead-letter queue.
    """
    try:
        command = Command.from_dict(body)
        if domain_of(command.type) != domain_of(task.name) or command.type not in _HANDLERS:
            raise MalformedMessage(f"a {command.type} command cannot be handled by {task.name}")
    except MalformedMessage as exc:
        dead_letter(task.request.id, f"malformed: {exc}")
    try:
        reply = handle(command)
    except TRANSIENT_ERRORS as exc:
        reply = _retry_or_give_up(task, command, exc)
    except Exception as exc:
        # A bug: never retried. Note why for the archive, then let Celery reject the message to
        # the dead-letter queue (task_acks_on_failure=False).
        note_reason(task.request.id, f"bug: {type(exc).__name__}: {exc}")
        raise
    if reply is None:
        log.info("the same command is being handled elsewhere; this copy is dropped")
        return "in_flight"
    try:
        send_reply(reply)
    except BROKER_ERRORS as exc:
        # The reply is durable in the inbox: the retry finds it there and sends it again.
        raise task.retry(exc=exc, countdown=1, max_retries=INFRASTRUCTURE_ATTEMPTS) from None
    return reply.outcome


def _retry_or_give_up(task, command, exc):
    policy = command.retry_policy
    error = type(exc).__name__
    attempts = policy.attempts if isinstance(exc, TransientError) else max(policy.attempts, INFRASTRUCTURE_ATTEMPTS)
    retries = task.request.retries
    if policy.retries(error) and retries + 1 < attempts:
        delay = policy.delay(retries)
        log.warning("transient failure, retry %d/%d in %.2fs: %s: %s", retries + 1, attempts - 1, delay, error, exc)
        raise task.retry(exc=exc, countdown=delay, max_retries=attempts)
    reason = f"retries exhausted after {retries + 1} attempts: {error}: {exc}"
    send_reply(command.fail("retries_exhausted", reason))
    dead_letter(task.request.id, reason)


def dead_letter(message_id, reason):
    """Reject the message in hand to its queue's dead-letter queue, noting why for the archive."""
    log.error("dead-lettering message_id=%s: %s", message_id, reason)
    note_reason(message_id, reason)
    raise Reject(reason, requeue=False)


def register_tasks(domain: str):
    """Create one Celery task per command type of `domain`, named after the type."""
    tasks = {}
    for message_type in sorted(t for t in _HANDLERS if domain_of(t) == domain):
        def task_body(self, body):
            return run_command(self, body)

        task_body.__name__ = message_type.replace(".", "_")
        tasks[message_type] = shared_task(name=message_type, bind=True)(task_body)
    return tasks
