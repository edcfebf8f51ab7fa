"""What every domain worker shares: the inbox, the handler registry, the task wrapper, replies.

A command is handled as one local transaction in the domain's database together with an inbox
row keyed by the command's message id. A redelivered command finds its inbox row and re-sends the
stored reply without doing the work again. The reply is published (with confirms) after commit and
the command is acked only after that (late acks), so a crash anywhere loses nothing.
"""
from __future__ import annotations

import logging
from typing import Callable

from celery import shared_task
from celery.exceptions import Reject
from django.apps import apps
from django.db import IntegrityError, InterfaceError, OperationalError, models, transaction

from contracts import Command, MalformedMessage, Reply
from orderhub.bus import publish
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


def handle(body) -> Reply:
    """Validate, deduplicate and handle one command; returns the reply to send (already durable)."""
    command = Command.from_dict(body)
    handler = _HANDLERS.get(command.type)
    if handler is None:
        raise MalformedMessage(f"no handler for {command.type}")
    database = domain_of(command.type)
    inbox_model = apps.get_model(database, "Inbox")
    with transaction.atomic(using=database):
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


def send_reply(reply: Reply):
    publish(REPLY_TYPE, reply.to_dict(), message_id=reply.message_id)


def run_command(task, body):
    """The body of every command task: handle, reply, and sort failures into their three kinds."""
    try:
        reply = handle(body)
    except MalformedMessage as exc:
        log.error("malformed command dead-lettered: %s", exc)
        raise Reject(f"malformed: {exc}", requeue=False) from None
    except TRANSIENT_ERRORS as exc:
        delay = min(0.5 * 2**task.request.retries, 30)
        log.warning("transient failure, retrying in %.1fs: %r", delay, exc)
        raise task.retry(exc=exc, countdown=delay, max_retries=20) from None
    send_reply(reply)
    return reply.outcome


def register_tasks(domain: str):
    """Create one Celery task per command type of `domain`, named after the type."""
    tasks = {}
    for message_type in sorted(t for t in _HANDLERS if domain_of(t) == domain):
        def task_body(self, body):
            return run_command(self, body)

        task_body.__name__ = message_type.replace(".", "_")
        tasks[message_type] = shared_task(name=message_type, bind=True)(task_body)
    return tasks
