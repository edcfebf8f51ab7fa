"""What an operator can do, from the admin or the command line: one function per action.

Each one needs a reason, changes what it says in one transaction together with one audit row, and
is safe to run twice: when there is nothing (left) to do it changes nothing, records nothing and
says so (`Result.changed` is False). Input that cannot be acted on raises `ActionRefused` with a
message for the operator, and changes nothing either. The admin checks the action's permission
before calling; the command line is trusted as the shell it runs in.
"""
from __future__ import annotations

import getpass
import time
import uuid
from dataclasses import dataclass, field

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count

from contracts import Command
from orderhub.console.models import Action, AuditEntry, Target
from orderhub.deadletters import services as deadletter_services
from orderhub.deadletters.models import DeadLetter
from sagas import engine, outbox
from sagas.models import SagaInstance

log = structlog.get_logger(__name__)

MAX_REASON = 2000
MAX_RESTOCK = 1_000_000


class ActionRefused(Exception):
    """The action cannot be done as asked (bad input, or it does not apply): nothing changed."""


@dataclass(frozen=True)
class Actor:
    name: str
    via: str  # "admin" or "cli"

    @classmethod
    def from_request(cls, request) -> Actor:
        return cls(request.user.get_username(), "admin")

    @classmethod
    def from_shell(cls) -> Actor:
        try:
            name = getpass.getuser()
        except Exception:  # no user name for this uid (a container)
            name = "unknown"
        return cls(name, "cli")


@dataclass(frozen=True)
class Result:
    changed: bool
    message: str


def _reason(reason) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ActionRefused("a reason is required")
    if len(reason) > MAX_REASON:
        raise ActionRefused(f"the reason is too long ({len(reason)} characters, at most {MAX_REASON})")
    return reason


def _audit(actor: Actor, action, target_type, target_id, reason, outcome, request_id=None) -> AuditEntry:
    entry = AuditEntry.objects.create(operator=actor.name, via=actor.via, action=action, target_type=target_type,
                                      target_id=str(target_id), reason=reason, outcome=outcome,
                                      request_id=request_id)
    log.info("operator action", operator=actor.name, via=actor.via, action=action,
             target=f"{target_type}:{target_id}", outcome=outcome)
    return entry


def _saga(saga_id) -> SagaInstance:
    try:
        return SagaInstance.objects.get(id=saga_id)
    except (SagaInstance.DoesNotExist, ValidationError, ValueError):
        raise ActionRefused(f"no saga {saga_id}") from None


def audit_trail(target_type, target_id):
    return AuditEntry.objects.filter(target_type=target_type, target_id=str(target_id))


# --- sagas --------------------------------------------------------------------------------------
def retry_saga(actor: Actor, saga_id, reason) -> Result:
    """Resume a parked saga: a compensation_failed one sends its failed compensation again, a stuck
    one gives its forward step a new attempt (engine.saga_retry)."""
    reason = _reason(reason)
    _saga(saga_id)
    with transaction.atomic():
        try:
            saga = engine.saga_retry(saga_id=saga_id)
        except engine.SagaNotRetriable as exc:
            return Result(False, f"nothing to do: {exc}")
        doing = "compensating" if saga.status == "compensating" else "retrying"
        outcome = f"resumed: {doing} step {saga.current_step}"
        _audit(actor, Action.RETRY_SAGA, Target.SAGA, saga.id, reason, outcome)
    return Result(True, f"saga {saga.id} {outcome}")


def move_saga(actor: Actor, saga_id, to_version: int, reason) -> Result:
    """Move a live saga to another version of its definition, where that is safe
    (engine.saga_move says why not)."""
    reason = _reason(reason)
    before = _saga(saga_id)
    with transaction.atomic():
        try:
            saga = engine.saga_move(saga_id=before.id, to_version=to_version)
        except engine.SagaNotMovable as exc:
            raise ActionRefused(str(exc)) from None
        outcome = f"moved from {saga.saga_type} v{before.definition_version} to v{saga.definition_version}"
        _audit(actor, Action.MOVE_SAGA, Target.SAGA, saga.id, reason, outcome)
    return Result(True, f"saga {saga.id} {outcome}")


def cancel_saga(actor: Actor, saga_id, reason) -> Result:
    """Ask a saga that has not reached its pivot to stop and compensate (engine.saga_cancel)."""
    reason = _reason(reason)
    with transaction.atomic():
        saga = SagaInstance.objects.select_for_update().filter(id=_saga(saga_id).id).get()
        if saga.cancel_requested or saga.status == "compensating":
            return Result(False, f"nothing to do: saga {saga.id} is already being cancelled ({saga.status})")
        try:
            engine.saga_cancel(saga_id=saga.id)
        except engine.SagaNotCancellable as exc:
            raise ActionRefused(f"saga {saga.id} cannot be cancelled: {exc.detail}") from None
        outcome = "cancellation requested: it compensates when its current step answers"
        _audit(actor, Action.CANCEL_SAGA, Target.SAGA, saga.id, reason, outcome)
    return Result(True, f"saga {saga.id}: {outcome}")


def resolve_saga(actor: Actor, saga_id, reason) -> Result:
    """Close a parked saga (stuck, or compensation_failed) that a person has dealt with outside
    the system (refunded by hand, say): it becomes `resolved`, its order `resolved`, both keeping
    their failure reason (engine.saga_resolve)."""
    reason = _reason(reason)
    _saga(saga_id)
    with transaction.atomic():
        try:
            saga, was = engine.saga_resolve(saga_id=saga_id, note=reason)
        except engine.SagaNotResolvable as exc:
            if exc.already:
                return Result(False, f"nothing to do: {exc}")
            raise ActionRefused(str(exc)) from None
        outcome = f"resolved (was {was}, reason kept: {saga.failure_reason or '-'})"
        _audit(actor, Action.RESOLVE_SAGA, Target.SAGA, saga.id, reason, outcome)
    return Result(True, f"saga {saga.id} {outcome}")


# --- dead letters -------------------------------------------------------------------------------
@dataclass
class ReplaySelection:
    """Which archived dead letters a replay takes: ids, and/or filters."""

    ids: list[int] | None = None
    queue: str | None = None
    message_type: str | None = None
    reason_contains: str | None = None

    def queryset(self):
        letters = DeadLetter.objects.filter(status=DeadLetter.Status.ARCHIVED)
        if self.ids is not None:
            letters = letters.filter(id__in=self.ids)
        if self.queue:
            letters = letters.filter(queue=self.queue)
        if self.message_type:
            letters = letters.filter(message_type=self.message_type)
        if self.reason_contains:
            letters = letters.filter(reason__icontains=self.reason_contains)
        return letters.order_by("id")

    def describe(self) -> str:
        parts = [f"{len(self.ids)} selected" if self.ids is not None else "all archived"]
        parts += [f"{name} {value!r}" for name, value in (("queue", self.queue), ("type", self.message_type),
                                                          ("reason containing", self.reason_contains)) if value]
        return ", ".join(parts)


@dataclass
class ReplayReport:
    matching: int
    by_queue: dict[str, int]
    replayed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # replayed or discarded meanwhile
    left: int = 0  # matching letters beyond this run's limit

    @property
    def message(self) -> str:
        if not self.replayed:
            return f"nothing to do: no archived dead letter matches ({self.matching} matching)" if not self.matching \
                else f"nothing replayed ({len(self.skipped)} already replayed or discarded)"
        text = f"replayed {len(self.replayed)} dead letter(s)"
        if self.skipped:
            text += f"; {len(self.skipped)} already replayed or discarded"
        if self.left:
            text += f"; {self.left} more match: run it again for the rest"
        return text


def replay_preview(selection: ReplaySelection) -> ReplayReport:
    """The dry run: how many archived dead letters the replay would publish, by queue."""
    letters = selection.queryset()
    by_queue = dict(letters.values_list("queue").annotate(n=Count("id")).order_by("queue"))
    return ReplayReport(matching=sum(by_queue.values()), by_queue=by_queue)


def replay_dead_letters(actor: Actor, selection: ReplaySelection, reason, *, limit: int | None = None,
                        rate: float | None = None, connection=None) -> ReplayReport:
    """Publish each selected archived dead letter again to the queue it died in, at most `rate` a
    second (settings.REPLAY_RATE) and `limit` in this run. Each letter is taken under a row lock,
    so two operators replaying the same letters at once publish each one once; one audit row per
    letter replayed. A replayed command that had its effect has none the second time (the inbox)."""
    reason = _reason(reason)
    rate = rate or settings.REPLAY_RATE
    report = replay_preview(selection)
    ids = list(selection.queryset().values_list("id", flat=True))
    if limit is not None and len(ids) > limit:
        report.left, ids = len(ids) - limit, ids[:limit]
    if not ids:
        return report
    from orderhub.celery import app

    interval, next_at = 1.0 / rate, time.monotonic()
    with (connection and _borrowed(connection)) or app.connection_for_write() as conn:
        for letter_id in ids:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic()) + interval
            with transaction.atomic():
                letter = DeadLetter.objects.select_for_update().filter(
                    id=letter_id, status=DeadLetter.Status.ARCHIVED).first()
                if letter is None:
                    report.skipped.append(letter_id)
                    continue
                deadletter_services.deadletter_replay(letter=letter, connection=conn)
                _audit(actor, Action.REPLAY_DEAD_LETTER, Target.DEAD_LETTER, letter.id, reason,
                       f"replayed to {letter.queue} (replay {letter.replay_count})")
            report.replayed.append(letter_id)
    return report


class _borrowed:
    """A connection the caller owns, usable in a `with` without being closed by it."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        return self.connection

    def __exit__(self, *exc):
        return False


def discard_dead_letter(actor: Actor, letter_id, reason) -> Result:
    """Mark a dead letter dealt with. It stays in the archive, with when it was last seen."""
    reason = _reason(reason)
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().filter(id=letter_id).first()
        if letter is None:
            raise ActionRefused(f"no dead letter {letter_id}")
        if letter.status == DeadLetter.Status.DISCARDED:
            return Result(False, f"nothing to do: dead letter {letter.id} was discarded at {letter.discarded_at:%Y-%m-%d %H:%M:%S}")
        was = letter.status
        letter = deadletter_services.deadletter_discard(letter=letter)
        _audit(actor, Action.DISCARD_DEAD_LETTER, Target.DEAD_LETTER, letter.id, reason,
               f"discarded (was {was}; last seen {letter.last_seen:%Y-%m-%d %H:%M:%S})")
    return Result(True, f"dead letter {letter.id} discarded")


# --- stock --------------------------------------------------------------------------------------
def restock(actor: Actor, sku, quantity, reason, *, request_id=None) -> Result:
    """Add `quantity` units of `sku` to the inventory. Inventory owns its database: the change goes
    to it as an `inventory.restock` command, through the outbox in the audit row's transaction, and
    the inventory worker applies it once (its inbox, keyed by the request id). A request id seen
    before (the same form submitted twice) does nothing."""
    from orderhub.orders.models import Product

    reason = _reason(reason)
    sku = (sku or "").strip()
    if not Product.objects.filter(sku=sku).exists():
        raise ActionRefused(f"no product with sku {sku!r}")
    try:
        quantity = int(quantity)
    except (TypeError, ValueError):
        raise ActionRefused(f"the quantity must be a whole number, not {quantity!r}") from None
    if not 1 <= quantity <= MAX_RESTOCK:
        raise ActionRefused(f"the quantity must be between 1 and {MAX_RESTOCK}, not {quantity}")
    request_id = uuid.UUID(str(request_id)) if request_id else uuid.uuid4()
    if AuditEntry.objects.filter(request_id=request_id).exists():
        return Result(False, "nothing to do: this restock was already sent")
    command = Command(type="inventory.restock", saga_id=str(request_id), step="restock", attempt=1,
                      payload={"sku": sku, "quantity": quantity, "reason": reason, "operator": actor.name},
                      correlation_id=str(request_id), message_id=str(request_id))
    try:
        with transaction.atomic():
            _audit(actor, Action.RESTOCK, Target.SKU, sku, reason, f"+{quantity} sent to inventory",
                   request_id=request_id)
            outbox.enqueue(command)
    except IntegrityError:  # the same request, submitted twice at once
        return Result(False, "nothing to do: this restock was already sent")
    return Result(True, f"{sku}: +{quantity} sent to inventory (applied within seconds)")
