"""What every domain worker shares: the inbox, the handler registry, the task wrapper, replies.

A command is handled as one local transaction in the domain's database together with an inbox
row keyed by the command's message id. A redelivered command finds its inbox row and re-sends the
stored reply without doing the work again. The reply is published (with confirms) after commit and
the command is acked only after that (late acks), so a crash anywhere loses nothing.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Callable, NoReturn

import structlog
from structlog.contextvars import bound_contextvars
from celery import shared_task
from celery.exceptions import Reject
from celery.exceptions import Retry as RetryLater  # contracts' Retry is the retry policy
from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connections, models, transaction
from kombu.exceptions import OperationalError as KombuOperationalError

from contracts import Command, MalformedMessage, Reply, Retry, UnreadableVersion
from contracts.envelope import HANDLER_ERROR, INFRASTRUCTURE_UNAVAILABLE, RETRIES_EXHAUSTED, is_one_way
from orderhub import delivery, process_metrics, tracing
from orderhub.bus import publish
from orderhub.deadletters.reasons import note_reason
from orderhub.topology import REPLY_TYPE

log = structlog.get_logger(__name__)


class BusinessRejection(Exception):
    """A rule of the domain says no (out of stock, declined). Answered with a failure reply."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TransientError(Exception):
    """Worth trying again later: a timeout, a reset connection, a flaky provider."""


class DependencyUnavailable(TransientError):
    """A dependency's circuit is open (workers/payments/circuit.py): nothing was tried. The command
    is held (RabbitMQ keeps it for `retry_after` seconds, when the circuit lets a trial through)
    on a budget of its own, HELD_POLICY, so a provider's outage does not use up the step's own
    retries, nor a compensation's."""

    def __init__(self, message, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class CleanupOwed(TransientError):
    """A late command found its saga already compensated and must undo what an earlier copy did
    at an outside party (a hold at the payment provider) before it can answer. Retried with
    backoff until it is done (a long budget of its own), never answered as an unknown outcome."""


# Asked before a command is given up on a transient error: a check may see that the error was a
# dependency's outage (workers/payments/circuit.py: the provider's circuit is open, or the charges
# failing around this one say it is going down) and return a DependencyUnavailable, and the command
# is held on HELD_POLICY instead of ending as an unknown outcome. `check(exc, counts)`.
_HOLD_CHECKS: list[Callable[[Exception, dict], "DependencyUnavailable | None"]] = []


def hold_instead(check):
    """Register a check asked before a command is given up on a transient error (see _HOLD_CHECKS)."""
    _HOLD_CHECKS.append(check)
    return check


# Our own infrastructure: a lost or refused database connection, a lock, a concurrent insert of
# the same business key. They say nothing about the command, so they have a retry budget of their
# own (settings.INFRASTRUCTURE_RETRY_*), apart from the step's policy.
INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError, IntegrityError)
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


def handles(message_type: str, *, replace: bool = False):
    """Register the function that handles one command type. It returns cmd.succeed()/cmd.fail()
    or raises BusinessRejection; it runs inside the domain's transaction. `replace`: a new release
    of the handler (an extension's, ORDERHUB_EXTENSIONS) instead of the built-in one."""

    def register(handler):
        if message_type in _HANDLERS and not replace:
            raise ValueError(f"{message_type} already has a handler")
        _HANDLERS[message_type] = handler
        return handler

    return register


def domain_of(message_type: str) -> str:
    return message_type.split(".", 1)[0]


def handle(command: Command) -> Reply | None:
    """Deduplicate and handle one command; returns the reply to send (already durable), or None
    when another worker is handling the same message at this moment.

    One transaction: take the message id and look for its inbox row (one round trip), run the
    handler in a savepoint (a rejection undoes what it wrote), then write the inbox row with its
    reply. A copy seen before gets the stored reply and nothing else."""
    handler = _HANDLERS.get(command.type)
    if handler is None:
        raise MalformedMessage(f"no handler for {command.type}")
    try:
        return _handle(command, handler)
    except IntegrityError:
        # Another copy's inbox row committed between our statement's snapshot and our lock (or a
        # business key was inserted concurrently): everything was rolled back; once more sees it.
        return _handle(command, handler)


def _handle(command, handler):
    database = domain_of(command.type)
    inbox_model = apps.get_model(database, "Inbox")
    with transaction.atomic(using=database):
        claimed, seen, stored = _claim(database, inbox_model, command.message_id)
        if not claimed:
            return None
        if seen:
            # Seen before (a redelivery, a resend, a replay): the stored reply, and nothing else.
            log.info("duplicate command, re-sending stored reply", message_id=command.message_id)
            return Reply.from_dict(stored)
        reply = _run_handler(database, handler, command)
        # The message id is ours for the transaction. An IntegrityError here (a copy committed
        # just before our lock, an unknown outcome recorded meanwhile) rolls everything back.
        inbox_model.objects.using(database).create(
            message_id=command.message_id, message_type=command.type, saga_id=command.saga_id,
            attempt=command.attempt, reply=reply.to_dict(),
        )
    return reply


def _run_handler(database, handler, command) -> Reply:
    """The handler, in a savepoint: a rejection undoes what it wrote and is the failure reply."""
    try:
        with transaction.atomic(using=database):
            return handler(command)
    except BusinessRejection as rejection:
        return command.fail(rejection.reason, rejection.detail)


# At most this many commands (savepoints) per transaction: PostgreSQL caches 64 subtransactions
# per backend, and past that each one costs a trip to pg_subtrans for every reader.
SAVEPOINTS_PER_TRANSACTION = 32
# After a handler ran longer than ORDERHUB_COMMAND_BATCH_SECONDS (a slow provider), the domain's
# transactions hold one command each for this long, so one slow call holds up no other command.
SLOW_HOLD_SECONDS = 10.0
_slow_until: dict[str, float] = {}


def handle_batch(commands: list[Command], *, parents: dict | None = None) -> list[tuple[Reply | None, dict | None]]:
    """Handle the first of `commands` (one domain's, distinct message ids) in one transaction, and
    return (reply, body to publish) for each command handled, in order: a prefix of `commands`,
    which the caller publishes and acks before it hands the rest in again. The reply is None when
    another worker is handling the same message at this moment (as `handle`).

    One statement claims every message id and reads their inbox rows; each new command's handler
    runs in a savepoint of its own (a rejection undoes only its own writes); one multi-row insert
    writes their inbox rows; one commit. The transaction takes no more commands once its handlers
    have run for ORDERHUB_COMMAND_BATCH_SECONDS in all (payments: the provider's time), so a slow
    call holds few replies, and after one handler alone took that long, it takes one command
    (SLOW_HOLD_SECONDS). Any error but a rejection rolls it all back: the caller handles the
    commands again one by one (`run_command`), where each failure is sorted as it always is.
    `parents`: message id -> the trace context its message's headers carried (the publish's)."""
    database = domain_of(commands[0].type)
    inbox_model = apps.get_model(database, "Inbox")
    budget = settings.COMMAND_BATCH_SECONDS
    limit = 1 if time.monotonic() < _slow_until.get(database, 0.0) else SAVEPOINTS_PER_TRANSACTION
    commands = commands[:limit]
    handled, rows, spent = [], [], 0.0
    with transaction.atomic(using=database):
        claims = _claim_many(database, inbox_model, [command.message_id for command in commands])
        for command in commands:
            taken, seen, stored = claims[str(command.message_id)]
            with bound_contextvars(message_id=command.message_id, saga_id=command.saga_id, task=command.type):
                if not taken:
                    handled.append((None, None))
                elif seen:
                    log.info("duplicate command, re-sending stored reply")
                    reply = Reply.from_dict(stored)
                    handled.append((reply, reply.to_dict()))
                else:
                    started = time.monotonic()
                    delivery.mark(command.message_id, delivery.BUSY)
                    parent = (parents or {}).get(command.message_id) or command.trace
                    with tracing.span(f"handle {command.type}", parent, kind="consumer",
                                      **{"orderhub.saga_id": command.saga_id, "orderhub.step": command.step,
                                         "orderhub.attempt": command.attempt,
                                         "messaging.message.id": command.message_id}):
                        reply = _run_handler(database, _HANDLERS[command.type], command)
                        body = reply.to_dict()
                        body["trace"] = tracing.carrier() or body["trace"]
                    delivery.mark(command.message_id, delivery.QUEUED)  # done; waits for the commit
                    took = time.monotonic() - started
                    spent += took
                    if took >= budget:
                        _slow_until[database] = time.monotonic() + SLOW_HOLD_SECONDS
                    rows.append(inbox_model(message_id=command.message_id, message_type=command.type,
                                            saga_id=command.saga_id, attempt=command.attempt, reply=reply.to_dict()))
                    handled.append((reply, body))
            if spent >= budget:
                break
        if rows:
            inbox_model.objects.using(database).bulk_create(rows)
    return handled


def _claim_many(database, inbox_model, message_ids) -> dict[str, tuple[bool, bool, dict | None]]:
    """`_claim` for many message ids in one statement: message id -> (taken, seen, stored reply).
    Try-locks only, so the order they are taken in cannot deadlock."""
    keys = [int.from_bytes(uuid.UUID(str(m)).bytes[:8], "big", signed=True) for m in message_ids]
    table = connections[database].ops.quote_name(inbox_model._meta.db_table)
    with connections[database].cursor() as cursor:
        cursor.execute(
            f"SELECT claim.id, pg_try_advisory_xact_lock(claim.key), inbox.message_id IS NOT NULL, inbox.reply "
            f"FROM unnest(%s::uuid[], %s::bigint[]) AS claim(id, key) "
            f"LEFT JOIN {table} AS inbox ON inbox.message_id = claim.id",
            [[str(m) for m in message_ids], keys],
        )
        found = cursor.fetchall()
    return {str(message_id): (taken, seen, json.loads(stored) if isinstance(stored, str) else stored)
            for message_id, taken, seen, stored in found}


def _claim(database, inbox_model, message_id) -> tuple[bool, bool, dict | None]:
    """Take the message id for this transaction and read its inbox row, in one round trip:
    (taken, seen before, stored reply). Not taken when another worker is handling the same
    message right now (a resend or a redelivery racing the original): it will reply, and waiting
    on its inbox row would only tie this worker up for as long as the first one takes."""
    key = int.from_bytes(uuid.UUID(message_id).bytes[:8], "big", signed=True)
    table = connections[database].ops.quote_name(inbox_model._meta.db_table)
    with connections[database].cursor() as cursor:
        cursor.execute(
            f"SELECT pg_try_advisory_xact_lock(%s), inbox.message_id IS NOT NULL, inbox.reply "
            f"FROM (SELECT 1) AS one LEFT JOIN {table} AS inbox ON inbox.message_id = %s",
            [key, message_id],
        )
        taken, seen, stored = cursor.fetchone()
    if isinstance(stored, str):
        stored = json.loads(stored)
    return taken, seen, stored


def withheld(message_type: str) -> dict:
    """What Flower (and any monitor) is shown of a message's arguments: not the body, whose payload
    holds payment tokens and addresses (orderhub/bus.py does the same for every first publish)."""
    return {"argsrepr": f"[<{message_type} body withheld>]", "kwargsrepr": "{}"}


def send_reply(reply: Reply):
    body = reply.to_dict()
    body["trace"] = tracing.carrier() or body["trace"]  # the handling span's, when tracing is on
    publish(REPLY_TYPE, body, message_id=reply.message_id)


def infrastructure_policy() -> Retry:
    return Retry(attempts=settings.INFRASTRUCTURE_RETRY_ATTEMPTS, initial=1.0, coefficient=2.0,
                 maximum=settings.INFRASTRUCTURE_RETRY_MAX_DELAY)


# A provider hold left by a command whose saga is gone is released whatever it takes: about a day.
CLEANUP_POLICY = Retry(attempts=1500, initial=1.0, coefficient=2.0, maximum=60.0)
# Held while a dependency's circuit is open: up to 120 holds (an hour at the default 30 s).
HELD_POLICY = Retry(attempts=120, initial=1.0, coefficient=1.0, maximum=1.0)


def _counts(retried) -> dict[str, int]:
    """Retries so far, per budget, as carried by the task's `retried` argument (zero when absent)."""
    retried = retried if isinstance(retried, dict) else {}
    return {kind: retried[kind] if isinstance(retried.get(kind), int) and retried[kind] >= 0 else 0
            for kind in ("transient", "infrastructure", "held")}


def run_command(task, body, retried=None):
    """The body of every command task: handle, reply, and sort failures into their three kinds.

    - malformed: dead-lettered at once with its reason, never retried;
    - transient (a provider timeout) and infrastructure (our database unreachable): retried, each
      under its own budget, the delay held by RabbitMQ (native delayed delivery). Once a budget is
      spent the outcome is *unknown*, never "did not happen": the worker records that answer in
      its inbox, so every later copy gets the same answer, and replies `unknown`;
    - anything else is a bug: the worker replies `unknown` (the saga need not wait for a deadline)
      and Celery rejects the message to the dead-letter queue, where an operator decides.
    """
    try:
        command = Command.from_dict(body)
        if domain_of(command.type) != domain_of(task.name) or command.type not in _HANDLERS:
            raise MalformedMessage(f"a {command.type} command cannot be handled by {task.name}")
    except UnreadableVersion as exc:
        # A newer release's message reached an older worker (docs/upgrading.md: workers first).
        dead_letter(task.request.id, f"unreadable version: {exc}")
    except MalformedMessage as exc:
        dead_letter(task.request.id, f"malformed: {exc}")
    counts = _counts(retried)
    outcome = "error"
    try:
        with delivery.holding(command.message_id), tracing.span(
                f"handle {command.type}", command.trace, kind="consumer",
                **{"orderhub.saga_id": command.saga_id, "orderhub.step": command.step,
                   "orderhub.attempt": command.attempt, "messaging.message.id": command.message_id}):
            outcome = _run(task, command, counts)
            return outcome
    except RetryLater:
        outcome = "retry"
        raise
    finally:
        process_metrics.COMMANDS.labels(command.type, outcome).inc()


def _run(task, command, counts):
    try:
        reply = handle(command)
    except (TransientError, *INFRASTRUCTURE_ERRORS) as exc:
        reply = _retry_or_give_up(task, command, exc, counts)
    except Exception as exc:
        # A bug: never retried. Note why for the archive, answer `unknown`, then let Celery reject
        # the message to the dead-letter queue (task_acks_on_failure=False).
        why = f"bug: {type(exc).__name__}: {exc}"
        note_reason(task.request.id, why)
        _reply_quietly(command, command.unknown(HANDLER_ERROR, why[:1000], dead_lettered=True))
        raise
    if reply is None:
        log.info("the same command is being handled elsewhere; this copy is dropped")
        return "in_flight"
    if is_one_way(command.type):
        return reply.outcome
    try:
        send_reply(reply)
        delivery.answered(command.message_id)
    except BROKER_ERRORS as exc:
        # The reply is durable in the inbox: the retry finds it there and sends it again.
        _retry(task, command, exc, counts, "infrastructure", infrastructure_policy())
        dead_letter(task.request.id, f"could not publish the reply: {type(exc).__name__}: {exc}")
    return reply.outcome


def _retry(task, command, exc, counts, kind, policy):
    """Retry under one budget (returns only when that budget is spent)."""
    error = type(exc).__name__
    so_far = counts[kind]
    if policy.retries(error) and so_far + 1 < policy.attempts:
        delay = exc.retry_after if isinstance(exc, DependencyUnavailable) else policy.delay(so_far)
        log.warning("retry", kind=kind, retry=so_far + 1, of=policy.attempts - 1, delay_s=round(delay, 2),
                    error=f"{error}: {exc}")
        delivery.retrying(command.message_id, delay)
        process_metrics.RETRIES.labels(command.type, kind).inc()
        try:
            raise task.retry(args=[command.to_dict()], kwargs={"retried": counts | {kind: so_far + 1}},
                             countdown=delay, exc=exc, **withheld(command.type))
        except Reject as rejected:
            if rejected.requeue:
                raise
            # Celery could not publish the retry (the broker node it published to went away) and
            # would reject the message to the dead-letter queue. Nothing is wrong with the message:
            # it goes back to its queue and is tried again, on whatever node serves it now.
            log.warning("retry could not be published; the command goes back to its queue",
                        message_id=command.message_id, error=repr(rejected.reason))
            raise Reject(rejected.reason, requeue=True) from None


def _retry_or_give_up(task, command, exc, counts):
    if isinstance(exc, DependencyUnavailable):
        kind, policy = "held", HELD_POLICY
    elif isinstance(exc, CleanupOwed):
        kind, policy = "transient", CLEANUP_POLICY
    elif isinstance(exc, TransientError):
        kind, policy = "transient", command.retry_policy
    else:
        kind, policy = "infrastructure", infrastructure_policy()
    _retry(task, command, exc, counts, kind, policy)
    if kind == "transient" and not isinstance(exc, CleanupOwed):
        # The step's own tries are spent. If they were spent on a dependency's outage, the command
        # waits for the dependency (its circuit's trial) instead of failing for it.
        held = next((found for check in _HOLD_CHECKS if (found := check(exc, counts)) is not None), None)
        if held is not None:
            log.warning("held instead of given up: the dependency looks down", message_id=command.message_id,
                        why=str(held))
            _retry(task, command, held, counts, "held", HELD_POLICY)
    attempts = counts[kind] + 1
    why = f"retries exhausted after {attempts} attempts ({kind}): {type(exc).__name__}: {exc}"
    reason = RETRIES_EXHAUSTED if kind in ("transient", "held") else INFRASTRUCTURE_UNAVAILABLE
    # A one-way command has nobody to tell "unknown": its rolled-back transaction means "not
    # applied", so it is dead-lettered, and a replay applies it once (the inbox keeps no answer).
    if not command.is_compensation and not isinstance(exc, CleanupOwed) and not is_one_way(command.type):
        recorded = _record_unknown(command, command.unknown(reason, why[:1000]))
        if recorded is not None:
            log.warning("outcome unknown, answered and recorded", message_id=command.message_id, why=why)
            return recorded
    # Not recorded (our database is unreachable, or a compensation, which is always safe to run
    # again): a later copy runs the handler anew. Dead-letter this one so an operator can replay it.
    _reply_quietly(command, command.unknown(reason, why[:1000], dead_lettered=True))
    dead_letter(task.request.id, f"{why}; outcome unknown")


def _record_unknown(command: Command, reply: Reply) -> Reply | None:
    """Store `reply` as the answer to this message id; returns the stored answer (an earlier copy's,
    if one got there first), or None when the domain's database cannot be reached."""
    database = domain_of(command.type)
    inbox_model = apps.get_model(database, "Inbox")
    try:
        with transaction.atomic(using=database):
            inbox, created = inbox_model.objects.using(database).get_or_create(
                message_id=command.message_id,
                defaults=dict(message_type=command.type, saga_id=command.saga_id, attempt=command.attempt,
                              reply=reply.to_dict()),
            )
    except INFRASTRUCTURE_ERRORS as exc:
        log.warning("could not record the unknown outcome", message_id=command.message_id, error=repr(exc))
        return None
    return reply if created or inbox.reply is None else Reply.from_dict(inbox.reply)


def _reply_quietly(command: Command, reply: Reply):
    """Send a reply on the way to dead-lettering: if the broker is gone too, the saga's deadline
    stands in for it. (A one-way command is never answered.)"""
    if is_one_way(command.type):
        return
    try:
        send_reply(reply)
        delivery.answered(command.message_id)
    except BROKER_ERRORS as exc:
        log.warning("could not send the reply", message_id=reply.in_reply_to, error=repr(exc))


def dead_letter(message_id, reason) -> NoReturn:
    """Reject the message in hand to its queue's dead-letter queue, noting why for the archive."""
    log.error("dead-lettering", message_id=str(message_id), reason=reason)
    note_reason(message_id, reason)
    raise Reject(reason, requeue=False)


def register_tasks(domain: str):
    """Create one Celery task per command type of `domain`, named after the type. Retries are
    counted by run_command (one budget per kind of failure), so Celery's own limit is off."""
    tasks = {}
    for message_type in sorted(t for t in _HANDLERS if domain_of(t) == domain):
        def task_body(self, body, retried=None):
            return run_command(self, body, retried)

        task_body.__name__ = message_type.replace(".", "_")
        tasks[message_type] = shared_task(name=message_type, bind=True, max_retries=None)(task_body)
    return tasks
