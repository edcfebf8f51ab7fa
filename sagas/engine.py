"""Saga definitions (Saga, Step, Retry) and the state machine that applies replies to them.

The engine knows nothing about orders: it starts sagas with a context, sends each step's command
through the outbox, applies replies under a row lock, and announces the end with `saga_ended`.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import django.dispatch
import structlog
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from contracts import Command, Reply, Retry, is_compensation, message_types
from contracts.envelope import INFRASTRUCTURE_UNAVAILABLE, payload_for
from orderhub import tracing
from sagas import outbox
from sagas.bulk import update_rows
from sagas.models import OutboxMessage, SagaEvent, SagaInstance, SagaStatus, SagaStep, StepStatus

log = structlog.get_logger(__name__)

# Sent inside the transaction that ends a saga, so listeners update their rows atomically with it.
saga_ended = django.dispatch.Signal()  # kwargs: saga
saga_resumed = django.dispatch.Signal()  # kwargs: saga; a parked saga works again, in its transaction
step_succeeded = django.dispatch.Signal()  # kwargs: saga, step (its name), data (the reply's); in the saga's transaction

# Every definition loaded, by (name, version); a saga instance is driven by the one it started
# with (SagaInstance.definition_version) to its end. REGISTRY holds the version new sagas start
# with: the newest loaded, unless settings.SAGA_START_VERSIONS names another (a rollback).
VERSIONS: dict[tuple[str, int], Saga] = {}
REGISTRY: dict[str, Saga] = {}


class DefinitionNotLoaded(LookupError):
    """A saga pinned to a definition version this release does not load."""


class InvalidSagaDefinition(Exception):
    pass


class SagaNotCancellable(Exception):
    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Step:
    name: str
    command: str
    compensate: str | None = None
    pivot: bool = False
    retriable: bool = False
    retry: Retry = field(default_factory=Retry)
    # Seconds a command may go unanswered (on top of the time its retries may wait), and how many
    # times it is then resent with the same message id before the step fails.
    deadline: float = 30.0
    resends: int = 2
    # Compensations retry until they succeed, within this budget; past it the saga needs an operator.
    compensation_retry: Retry = field(
        default_factory=lambda: Retry(attempts=5, initial=1.0, coefficient=2.0, maximum=4.0)
    )

    # How many times a compensation that goes unanswered is sent anew (each resent `resends` times)
    # before the saga is left to an operator.
    compensation_sends: int = 5
    # At or after the pivot a step is never compensated: it is tried again, new attempt after new
    # attempt, up to this many in all; then the saga is parked for an operator (`stuck`).
    max_attempts: int = 5

    def timeout(self, *, compensation: bool) -> float:
        return self.deadline + (self.compensation_retry if compensation else self.retry).budget()


class Saga:
    """A saga declared as a table of steps; validated when it is declared (at import)."""

    def __init__(self, name: str, *steps: Step, version: int = 1):
        self.name = name
        self.version = version
        self.steps = tuple(steps)
        self._validate()
        self.pivot_index = next((i for i, s in enumerate(self.steps) if s.pivot), None)
        VERSIONS[(name, version)] = self
        if name not in REGISTRY or REGISTRY[name].version < version:
            REGISTRY[name] = self

    def _validate(self):
        where = f"saga {self.name!r}"
        if not self.steps:
            raise InvalidSagaDefinition(f"{where}: needs at least one step")
        names = [s.name for s in self.steps]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidSagaDefinition(f"{where}: duplicate step names {duplicates}")
        known = set(message_types())
        for step in self.steps:
            for message_type in filter(None, (step.command, step.compensate)):
                if message_type not in known:
                    raise InvalidSagaDefinition(
                        f"{where}: step {step.name!r} names unknown message type {message_type!r}"
                    )
            if step.compensate and not is_compensation(step.compensate):
                raise InvalidSagaDefinition(
                    f"{where}: step {step.name!r} compensates with {step.compensate!r}, which is not "
                    "registered as a compensation (contracts.envelope.register_compensation)"
                )
            if step.max_attempts < 1:
                raise InvalidSagaDefinition(f"{where}: step {step.name!r} needs max_attempts of at least 1")
        pivots = [s.name for s in self.steps if s.pivot]
        if len(pivots) > 1:
            raise InvalidSagaDefinition(f"{where}: more than one pivot step {pivots}")
        if pivots:
            index = names.index(pivots[0])
            if self.steps[index].compensate:
                raise InvalidSagaDefinition(f"{where}: pivot step {pivots[0]!r} cannot have a compensation")
            for step in self.steps[index + 1 :]:
                if not step.retriable:
                    raise InvalidSagaDefinition(
                        f"{where}: step {step.name!r} comes after the pivot and must be retriable"
                    )
                if step.compensate:
                    raise InvalidSagaDefinition(
                        f"{where}: step {step.name!r} comes after the pivot and cannot have a compensation"
                    )
        if not isinstance(self.version, int) or self.version < 1:
            raise InvalidSagaDefinition(f"{where}: version must be a whole number from 1")
        if (self.name, self.version) in VERSIONS:
            raise InvalidSagaDefinition(f"{where}: version {self.version} of a saga with this name is already defined")

    def past_pivot(self, index: int) -> bool:
        """Whether the step at `index` is the pivot or after it (the saga can no longer go back)."""
        return self.pivot_index is not None and index >= self.pivot_index

    def __repr__(self):
        return f"Saga({self.name!r}, v{self.version}, {len(self.steps)} steps)"


def definition_of(saga: SagaInstance) -> Saga:
    """The definition this instance started with, which drives it to its end."""
    definition = VERSIONS.get((saga.saga_type, saga.definition_version))
    if definition is None:
        raise DefinitionNotLoaded(
            f"saga {saga.id} is pinned to {saga.saga_type} v{saga.definition_version}, which this release does "
            f"not load (loaded: {', '.join(f'v{v}' for n, v in sorted(VERSIONS) if n == saga.saga_type) or 'none'})")
    return definition


def starting_definition(name: str) -> Saga:
    """The version new sagas of `name` start with: the newest loaded, or the one
    ORDERHUB_SAGA_START_VERSIONS pins (place_order=1: start the old one while rolling back)."""
    from django.conf import settings

    pinned = settings.SAGA_START_VERSIONS.get(name)
    if pinned is None:
        return REGISTRY[name]
    try:
        return VERSIONS[(name, pinned)]
    except KeyError:
        raise DefinitionNotLoaded(f"ORDERHUB_SAGA_START_VERSIONS pins {name} v{pinned}, which is not loaded") from None


# A parked saga (stuck, compensation_failed) is live: an operator's retry drives it again.
DONE_STATUSES = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.RESOLVED)


def live_versions() -> dict[tuple[str, int], int]:
    """Sagas not done (running, compensating or parked), by (saga type, definition version)."""
    from django.db.models import Count

    rows = (SagaInstance.objects.exclude(status__in=DONE_STATUSES).values_list("saga_type", "definition_version")
            .annotate(n=Count("id")).order_by())
    return {(name, version): n for name, version, n in rows}


def unloaded_versions_in_use() -> list[str]:
    """One line per definition version that live sagas are pinned to and this release does not
    load: dropping it would strand them (the orchestrator refuses to start)."""
    return [f"{name} v{version}: {n} live saga{'s' if n != 1 else ''} pinned to it, not loaded by this release"
            for (name, version), n in sorted(live_versions().items()) if (name, version) not in VERSIONS]


class SagaNotMovable(Exception):
    pass


def saga_move(*, saga_id, to_version: int) -> SagaInstance:
    """Move a live saga to another version of its definition, keeping what it has done. Refused
    unless it is safe: the target has the saga's current step, every step the saga has started
    (each may need compensating), and, before the current step, no step the saga has not done
    (it would be skipped)."""
    with transaction.atomic():
        saga = SagaInstance.objects.select_for_update().get(id=saga_id)
        target = VERSIONS.get((saga.saga_type, to_version))
        if target is None:
            raise SagaNotMovable(f"{saga.saga_type} v{to_version} is not loaded")
        if saga.definition_version == to_version:
            raise SagaNotMovable(f"saga {saga.id} is already on {saga.saga_type} v{to_version}")
        if saga.status in DONE_STATUSES:
            raise SagaNotMovable(f"saga {saga.id} is {saga.status}: only a live saga is moved")
        steps = {step.name: step for step in saga.steps.all()}
        current = next(step for step in steps.values() if step.index == saga.current_step)
        names = [spec.name for spec in target.steps]
        if current.name not in names:
            raise SagaNotMovable(f"saga {saga.id} is at step {current.name!r}, which {saga.saga_type} "
                                 f"v{to_version} no longer has")
        started = sorted(name for name, step in steps.items() if step.status != StepStatus.PENDING)
        if missing := [name for name in started if name not in names]:
            raise SagaNotMovable(f"saga {saga.id} has started {missing}, which v{to_version} no longer has")
        here = names.index(current.name)
        if skipped := [name for name in names[:here] if steps.get(name) is None
                       or steps[name].status != StepStatus.SUCCEEDED]:
            raise SagaNotMovable(f"v{to_version} has {skipped} before {current.name!r}, which saga {saga.id} "
                                 "has not done: they would be skipped")
        if target.past_pivot(here) != definition_of(saga).past_pivot(current.index):
            raise SagaNotMovable(f"step {current.name!r} is on the other side of the pivot in v{to_version}")
        # Renumber to the target's order (through indexes out of the way, each being unique): kept
        # steps keep their state, dropped ones (never started) go, new ones wait.
        position = {spec.name: index for index, spec in enumerate(target.steps)}
        SagaStep.objects.filter(id__in=[step.id for name, step in steps.items() if name not in position]).delete()
        kept = {name: step for name, step in steps.items() if name in position}
        for name, step in kept.items():
            SagaStep.objects.filter(id=step.id).update(index=10_000 + position[name])
        for name, step in kept.items():
            SagaStep.objects.filter(id=step.id).update(index=position[name])
        SagaStep.objects.bulk_create(SagaStep(saga=saga, index=index, name=name)
                                     for name, index in position.items() if name not in kept)
        was = saga.definition_version
        saga.definition_version, saga.current_step = to_version, here
        _event(saga, current.name, SagaEvent.Kind.STATUS, None, "", {"moved": f"v{was} -> v{to_version}"})
        saga.version += 1
        saga.save()
        return saga


# --- starting ---------------------------------------------------------------------------------
def saga_start(*, definition: Saga, context: dict, correlation_id: str, saga_id=None) -> SagaInstance:
    """Create the saga (with `saga_id`, when the caller has written it already), pinned to
    `definition`'s version, and queue its first command. Call inside the caller's transaction."""
    saga = SagaInstance.objects.create(
        **({"id": saga_id} if saga_id else {}),
        saga_type=definition.name, definition_version=definition.version, correlation_id=correlation_id,
        context=context, trace=tracing.carrier() or {}
    )
    steps = SagaStep.objects.bulk_create(
        SagaStep(saga=saga, index=i, name=step.name) for i, step in enumerate(definition.steps)
    )
    _send(saga, definition, steps[0], compensation=False)
    transaction.on_commit(lambda: _count_saga("started", definition.name))
    return saga


# --- applying replies -------------------------------------------------------------------------
def reply_apply(reply: Reply) -> str:
    """Apply one reply in one transaction with the saga row locked. Returns what happened:
    "applied" (the saga moved), "late" (a reply to an earlier command of the step, recorded and
    handled by the rules of `_on_late_reply`, which changed nothing), "stale" (a copy of a reply
    already seen, or one for no step of the saga) or "unknown" (no such saga). A saga pinned to a
    definition version this release does not load raises DefinitionNotLoaded. A batch of one."""
    [(outcome, why)] = replies_apply([reply])
    if outcome == "unreadable":
        raise DefinitionNotLoaded(why)
    return outcome


def replies_apply(replies: list[Reply]) -> list[tuple[str, str]]:
    """Apply a batch of replies in one transaction and one commit (sagas/consumer.py). The sagas'
    rows are locked in id order (so two orchestrators never deadlock over one batch's sagas), read
    with their steps in two statements, and each reply is applied as `reply_apply` would apply it,
    in arrival order. Returns (outcome, why) per reply: `reply_apply`'s outcomes, or "unreadable"
    for a saga pinned to a definition version this release does not load (nothing of that reply is
    written; the others go through). Any other error rolls the whole batch back: the consumer then
    applies its replies one per transaction, so a failing reply fails alone."""
    with transaction.atomic(), outbox.collected():
        wanted = sorted({_saga_key(reply.saga_id) for reply in replies} - {None})
        sagas = {saga.id: saga for saga in SagaInstance.objects.select_for_update().filter(id__in=wanted).order_by("id")}
        for saga in sagas.values():
            saga._steps = {}
            saga._applied = 0
            saga._dirty_steps = {}
        for step in SagaStep.objects.filter(saga_id__in=sagas):
            sagas[step.saga_id]._steps[step.index] = step
        events, seen, results = [], set(), []
        for reply in replies:
            saga = sagas.get(_saga_key(reply.saga_id))
            if saga is None:
                log.warning("reply for unknown saga", saga_id=reply.saga_id, message_id=reply.message_id)
                results.append(("unknown", ""))
                continue
            try:
                definition_of(saga)
            except DefinitionNotLoaded as exc:
                results.append(("unreadable", str(exc)))
                continue
            if saga.id in seen and events:
                # A second reply to one saga in the batch: what the first recorded is read by the
                # rules for late and duplicate replies, so it is written first.
                SagaEvent.objects.bulk_create(events)
                events = []
                _write_steps(sagas.values())
                outbox.flush()
            seen.add(saga.id)
            saga._events = events
            with tracing.span(f"reply apply {reply.step}", reply.trace, kind="consumer", **{
                    "orderhub.saga_id": reply.saga_id, "orderhub.step": reply.step,
                    "orderhub.outcome": reply.outcome}):
                outcome = _apply(saga, reply)
            events = saga._events
            if outcome == "applied":
                saga._applied += 1
            results.append((outcome, ""))
            transaction.on_commit(lambda saga=saga, reply=reply, outcome=outcome: _count_reply(saga, reply, outcome))
        SagaEvent.objects.bulk_create(events)
        _write_steps(sagas.values())
        moved = [saga for saga in sagas.values() if saga._applied]
        for saga in moved:
            saga.version += saga._applied
        update_rows(SagaInstance, moved, SAGA_FIELDS)
        return results


# What a batch of replies writes back, each in one statement (sagas/bulk.py).
SAGA_FIELDS = [f.name for f in SagaInstance._meta.concrete_fields if f.name not in ("id", "created_at")]
STEP_FIELDS = [f.name for f in SagaStep._meta.concrete_fields if f.name not in ("id", "saga")]


def _save_step(saga, step):
    """Save a step now, or, in a batch of replies, when the batch writes its steps."""
    dirty = getattr(saga, "_dirty_steps", None)
    if dirty is None:
        step.save()
    else:
        dirty[step.id] = step


def _write_steps(sagas):
    steps = []
    for saga in sagas:
        steps.extend(saga._dirty_steps.values())
        saga._dirty_steps = {}
    update_rows(SagaStep, steps, STEP_FIELDS)


def _saga_key(saga_id):
    try:
        return uuid.UUID(str(saga_id))
    except ValueError:
        return None


def _count_reply(saga, reply, outcome):
    from orderhub import process_metrics

    process_metrics.REPLIES.labels(outcome).inc()
    step = next((s for s in saga._steps.values() if s.name == reply.step), None)
    if outcome == "applied" and step is not None and step.started_at and step.finished_at and step.status in (
            StepStatus.SUCCEEDED, StepStatus.FAILED):
        process_metrics.STEP_SECONDS.labels(step.name, step.status).observe(
            max(0.0, (step.finished_at - step.started_at).total_seconds()))


def _apply(saga, reply) -> str:
    step = next((step for step in saga._steps.values() if step.name == reply.step), None)
    awaited = step is not None and step.status in (StepStatus.RUNNING, StepStatus.COMPENSATING)
    definition = definition_of(saga)
    if awaited and str(step.message_id) == reply.in_reply_to:
        _event(saga, step.name, SagaEvent.Kind.REPLY, reply.message_id, "", reply.to_dict())
        if step.status == StepStatus.RUNNING:
            _on_action_reply(saga, definition, step, reply)
        else:
            _on_compensation_reply(saga, definition, step, reply)
        return "applied"
    return _on_late_reply(saga, definition, step, reply)


def _on_late_reply(saga, definition, step, reply) -> str:
    """A reply that is not to the command the step awaits now. The rules (docs/architecture.md, "Late replies"):
    - a copy of a reply already recorded, a second answer to a command already answered, or a
      reply for no step: stale, recorded, nothing else;
    - a success of any attempt of the step's compensation completes that compensation if it is
      still awaited or was declared failed (the saga then carries on compensating, and leaves the
      operator's queue by itself): compensations are idempotent, so any attempt's success will do;
    - a success of an earlier attempt of an action the saga still wants (a step going forward:
      running a later attempt, waiting to retry, or stuck) completes the step;
    - anything else (a failure of an earlier attempt; a success of an action the saga has since
      decided to compensate, which that compensation covers) is recorded as late and changes
      nothing."""
    name = step.name if step is not None else reply.step
    seen = (SagaEvent.Kind.REPLY, SagaEvent.Kind.LATE_REPLY, SagaEvent.Kind.STALE_REPLY)
    # A worker answers each command once (its inbox re-sends that same reply), so a second answer
    # to a command already answered is as stale as a copy.
    duplicate = step is None or SagaEvent.objects.filter(saga=saga, kind__in=seen).filter(
        Q(message_id=reply.message_id) | Q(kind=SagaEvent.Kind.REPLY, body__in_reply_to=reply.in_reply_to)).exists()
    sent = None if duplicate else OutboxMessage.objects.filter(id=reply.in_reply_to, saga_id=saga.id).first()
    if sent is None:
        _event(saga, name, SagaEvent.Kind.STALE_REPLY, reply.message_id, "", reply.to_dict())
        log.info("stale or duplicate reply ignored", saga_id=str(saga.id), step=name)
        return "stale"
    spec = definition.steps[step.index]
    now = timezone.now()
    _event(saga, step.name, SagaEvent.Kind.LATE_REPLY, reply.message_id, sent.message_type, reply.to_dict())
    if saga.status == SagaStatus.RESOLVED:
        # A person closed this saga; what the reply says is theirs to read, not ours to act on.
        log.warning("late reply to a resolved saga recorded", saga_id=str(saga.id), step=step.name,
                    to=sent.message_type)
        return "late"
    if reply.succeeded and sent.message_type == spec.compensate and step.status in (
            StepStatus.COMPENSATING, StepStatus.COMPENSATION_FAILED):
        _resume_if_parked(saga, step, "a late success of its compensation")
        step.deadline_at = None
        _compensation_succeeded(saga, definition, step, now)
        return "applied"
    if reply.succeeded and sent.message_type == spec.command and step.status in (
            StepStatus.RUNNING, StepStatus.RETRY_WAIT, StepStatus.STUCK):
        _resume_if_parked(saga, step, "a late success of an earlier attempt")
        step.deadline_at = None
        _action_succeeded(saga, definition, step, reply, now)
        return "applied"
    log.info("late reply recorded", saga_id=str(saga.id), step=step.name, to=sent.message_type)
    return "late"


def _resume_if_parked(saga, step, why):
    if saga.is_final:
        log.warning("saga resumed", by=why, saga_id=str(saga.id), step=step.name)
        saga.status = SagaStatus.COMPENSATING if step.status == StepStatus.COMPENSATION_FAILED else SagaStatus.RUNNING
        saga.ended_at = None
        if saga.status == SagaStatus.RUNNING:
            saga.failure_reason = ""
        _event(saga, step.name, SagaEvent.Kind.STATUS, None, "", {"resumed": why})
        saga_resumed.send(sender=SagaInstance, saga=saga)


def _on_action_reply(saga, definition, step, reply):
    now = timezone.now()
    step.deadline_at = None
    if reply.succeeded:
        _action_succeeded(saga, definition, step, reply, now)
        return
    step.error = f"{reply.reason}: {reply.detail}".strip(": ")[:2000]
    if reply.unknown:
        step.error = f"outcome unknown: {step.error}"[:2000]
        _on_unknown_outcome(saga, definition, step, now, reason=reply.reason)
    elif definition.steps[step.index].retriable:
        # Retriable steps (after the pivot) never compensate: they are sent again, after a backoff.
        _forward_again(saga, definition, step, now, why=step.error)
    else:
        step.status = StepStatus.FAILED
        step.finished_at = now
        _save_step(saga, step)
        _compensate_from(saga, definition, step.index - 1, reason=reply.reason)


def _action_succeeded(saga, definition, step, reply, now):
    step.status = StepStatus.SUCCEEDED
    step.finished_at = now
    step.error = ""
    _save_step(saga, step)
    saga.context.setdefault("results", {})[step.name] = reply.data
    step_succeeded.send(sender=SagaInstance, saga=saga, step=step.name, data=reply.data)
    if saga.cancel_requested and not definition.past_pivot(step.index):
        _compensate_from(saga, definition, step.index, reason="cancelled_by_client")
    elif step.index + 1 < len(definition.steps):
        saga.current_step = step.index + 1
        _send(saga, definition, _step_at(saga, saga.current_step), compensation=False)
    else:
        _end(saga, SagaStatus.COMPLETED)


def _on_unknown_outcome(saga, definition, step, now, *, reason):
    """The step may or may not have had its effect. Before the pivot it is compensated together
    with the earlier steps (every compensation is safe either way); at or after the pivot the saga
    cannot go back, so the step is tried again."""
    if definition.past_pivot(step.index) or definition.steps[step.index].retriable:
        _forward_again(saga, definition, step, now, why=step.error)
        return
    step.status = StepStatus.UNKNOWN
    step.finished_at = now
    _save_step(saga, step)
    _compensate_from(saga, definition, step.index, reason=reason)


def _forward_again(saga, definition, step, now, *, why, backoff=True):
    """A new attempt of a step that must go forward, at once or after a backoff (the deadline sweep
    sends it when due); past its declared cap the saga is parked for an operator instead."""
    spec = definition.steps[step.index]
    if step.attempts - step.attempts_at_resume >= spec.max_attempts:
        step.status = StepStatus.STUCK
        step.error = f"stuck after {spec.max_attempts} attempts; last: {why}"[:2000]
        _save_step(saga, step)
        log.error("forward step stuck", saga_id=str(saga.id), step=step.name, why=why)
        saga.failure_reason = FORWARD_STEP_STUCK
        _end(saga, SagaStatus.STUCK)
        return
    if not backoff:
        _send(saga, definition, step, compensation=False)
        return
    step.status = StepStatus.RETRY_WAIT
    step.deadline_at = now + timedelta(seconds=spec.retry.delay(min(step.attempts - 1, 20)))
    _save_step(saga, step)


def _on_compensation_reply(saga, definition, step, reply):
    now = timezone.now()
    step.deadline_at = None
    if reply.succeeded:
        _compensation_succeeded(saga, definition, step, now)
        return
    error = f"{reply.reason}: {reply.detail}".strip(": ")
    if (reply.unknown and reply.reason == INFRASTRUCTURE_UNAVAILABLE
            and step.compensation_attempts < definition.steps[step.index].compensation_sends):
        # The worker's own database was out of reach: that says nothing about the compensation,
        # which is sent anew, as a silent one is.
        step.error = f"compensation {error}"[:2000]
        _send(saga, definition, step, compensation=True)
        return
    _compensation_failed(saga, step, error)


def _compensation_succeeded(saga, definition, step, now):
    step.status = StepStatus.COMPENSATED
    step.compensated_at = now
    _save_step(saga, step)
    _compensate_from(saga, definition, step.index - 1, reason=saga.failure_reason)


def _compensation_failed(saga, step, error):
    step.status = StepStatus.COMPENSATION_FAILED
    step.error = f"compensation failed: {error}"
    _save_step(saga, step)
    _end(saga, SagaStatus.COMPENSATION_FAILED)


# Steps whose effect may exist and must be undone when the saga goes back.
_TO_COMPENSATE = (StepStatus.SUCCEEDED, StepStatus.TIMED_OUT, StepStatus.UNKNOWN)
# The failure reason of a saga parked because a step past its pivot ran out of attempts.
FORWARD_STEP_STUCK = "forward_step_stuck"


def _compensate_from(saga, definition, index, *, reason):
    """Compensate the steps from `index` down to 0, one at a time, in reverse order."""
    saga.status = SagaStatus.COMPENSATING
    saga.failure_reason = saga.failure_reason or reason or ""
    for candidate in _steps_to_compensate(saga, index):
        if definition.steps[candidate.index].compensate:
            saga.current_step = candidate.index
            _send(saga, definition, candidate, compensation=True)
            return
    _end(saga, SagaStatus.COMPENSATED)


def _step_at(saga, index):
    steps = getattr(saga, "_steps", None)
    return steps[index] if steps is not None else saga.steps.get(index=index)


def _steps_to_compensate(saga, index):
    steps = getattr(saga, "_steps", None)
    if steps is None:
        return saga.steps.filter(index__lte=index, status__in=_TO_COMPENSATE).order_by("-index")
    return [steps[i] for i in sorted(steps, reverse=True) if i <= index and steps[i].status in _TO_COMPENSATE]


def _end(saga, status):
    saga.status = status
    saga.ended_at = timezone.now()
    _event(saga, "", SagaEvent.Kind.STATUS, None, "", {"status": status, "reason": saga.failure_reason})
    saga_ended.send(sender=SagaInstance, saga=saga)
    transaction.on_commit(lambda: _count_saga("ended", saga.saga_type, status))


def _count_saga(what, saga_type, status=""):
    from orderhub import process_metrics

    if what == "started":
        process_metrics.SAGAS_STARTED.labels(saga_type).inc()
    else:
        process_metrics.SAGAS_ENDED.labels(saga_type, status).inc()


# --- sending ----------------------------------------------------------------------------------
def _send(saga, definition, step, *, compensation: bool):
    """Send a new attempt of the step's action or compensation (a new message id)."""
    spec = definition.steps[step.index]
    now = timezone.now()
    if compensation:
        step.compensation_attempts += 1
        step.status = StepStatus.COMPENSATING
        attempt, message_type, policy = step.compensation_attempts, spec.compensate, spec.compensation_retry
    else:
        step.attempts += 1
        step.status = StepStatus.RUNNING
        step.started_at = step.started_at or now
        attempt, message_type, policy = step.attempts, spec.command, spec.retry
    deadline = now + timedelta(seconds=spec.timeout(compensation=compensation))
    version, payload = payload_for(message_type, saga.context)
    command = Command(
        type=message_type,
        saga_id=str(saga.id),
        step=step.name,
        attempt=attempt,
        payload=payload,
        version=version,
        correlation_id=saga.correlation_id,
        causation_id=str(step.message_id) if step.message_id else None,
        deadline=deadline.isoformat(),
        retry=policy.to_dict(),
        trace=tracing.carrier_for(saga.trace),
    )
    step.message_id = command.message_id
    step.deadline_at = deadline
    step.resends = 0
    step.deferrals = 0
    _save_step(saga, step)
    _event(saga, step.name, SagaEvent.Kind.COMMAND, command.message_id, message_type, command.to_dict())
    outbox.enqueue(command)


def _event(saga, step, kind, message_id, message_type, body):
    event = SagaEvent(saga=saga, step=step, kind=kind, message_id=message_id, message_type=message_type, body=body)
    if getattr(saga, "_events", None) is not None:
        saga._events.append(event)  # written by reply_apply, in order, before it commits
    else:
        event.save()


# --- deadlines --------------------------------------------------------------------------------
_WAITING = (StepStatus.RUNNING, StepStatus.COMPENSATING, StepStatus.RETRY_WAIT)


def deadlines_sweep(*, now=None, due_before=None, limit: int = 500, backlog=None) -> int:
    """Act on every step whose deadline passed before `due_before` (default: now): resend the same
    command a bounded number of times, then fail the step (or send a new attempt where the step may
    not fail). Sagas locked by another sweeper or by a reply being applied are skipped (SKIP LOCKED)
    and seen next time.

    A deadline measures a participant's silence, not our backlog:
    - the orchestrator runs the sweep from a marker queued behind the replies (sagas.tasks), and
      passes the time the marker was queued as `due_before`: every reply sent before then has been
      applied, so a reply still waiting in our own queue never counts as a missed deadline;
    - `backlog(message_type, message_id, busy_grace=)` says why the participant is not silent, or
      None (or what it saw, under `stands`): it is working through the retries it was given, or
      took the command less than the step's deadline ago, or nobody holds the command and its
      queue holds messages, the command among them (sagas.tasks.participant_backlog). Then the
      deadline is put off (a bounded number of times) instead of resending, which would only add
      to that queue.

    One saga that cannot be handled (a bug, a definition removed by a deploy) must not stop the
    others: its failure is logged and noted on its step, which is looked at again later."""
    now = now or timezone.now()
    due_before = min(due_before or now, now)
    backlog = backlog or (lambda message_type, message_id, busy_grace=0.0: None)
    due = list(
        SagaStep.objects.filter(status__in=_WAITING, deadline_at__lte=due_before)
        .order_by("deadline_at")
        .values_list("saga_id", "id")[:limit]
    )
    handled = 0
    for saga_id, step_id in due:
        try:
            handled += _sweep_one(saga_id, step_id, now, due_before, backlog)
        except (OperationalError, InterfaceError):
            raise  # the database is gone: every other saga would fail the same way
        except Exception as exc:
            _note_sweep_failure(saga_id, step_id, now, exc)
    return handled


def _sweep_one(saga_id, step_id, now, due_before, backlog) -> int:
    with transaction.atomic():
        saga = SagaInstance.objects.select_for_update(skip_locked=True).filter(id=saga_id).first()
        if saga is None:
            return 0
        step = SagaStep.objects.get(id=step_id)
        if step.status not in _WAITING or step.deadline_at is None or step.deadline_at > due_before:
            return 0  # a reply got there first
        definition = definition_of(saga)
        _on_deadline(saga, definition, step, now, backlog)
        saga.version += 1
        saga.save()
        return 1


# A step the sweep failed on is looked at again after this long, so it never holds up the others.
SWEEP_FAILURE_BACKOFF = timedelta(seconds=30)


def _note_sweep_failure(saga_id, step_id, now, exc):
    log.exception("deadline sweep failed on a saga; carrying on with the others", saga_id=str(saga_id),
                  step_id=step_id)
    SagaStep.objects.filter(id=step_id).update(
        sweep_error=f"{now.isoformat()} {type(exc).__name__}: {exc}"[:2000],
        sweep_failures=F("sweep_failures") + 1,
        deadline_at=now + SWEEP_FAILURE_BACKOFF,
    )


# How long, in all, a deadline may be put off (in deferrals of one timeout each): past that the step
# counts as silent, so a participant that has stopped altogether is given up on and the saga
# compensates. Under chaos at 5 orders/s a retried command was seen to wait 110 s in a backlog.
DEFERRAL_BUDGET_SECONDS = 600.0


def max_deferrals(timeout: float) -> int:
    return max(1, math.ceil(DEFERRAL_BUDGET_SECONDS / timeout))


def _on_deadline(saga, definition, step, now, backlog):
    spec = definition.steps[step.index]
    if step.status == StepStatus.RETRY_WAIT:
        _send(saga, definition, step, compensation=False)
        return
    compensation = step.status == StepStatus.COMPENSATING
    timeout = timedelta(seconds=spec.timeout(compensation=compensation))
    if OutboxMessage.objects.filter(id=step.message_id, published_at__isnull=True).exists():
        # Our own backlog: the command is still in the outbox (the process that wrote it died
        # before publishing it, and the relay has not come round yet). The participant has not
        # had it, so it cannot be silent: publish it now and give it its time.
        seen = {"unpublished": True}
        message_id = step.message_id
        transaction.on_commit(lambda: outbox.publish_after_commit([message_id]), robust=True)
    else:
        seen = backlog(spec.compensate if compensation else spec.command, str(step.message_id),
                       busy_grace=spec.deadline) or {}
    waiting = not seen.get("stands") and seen
    if waiting and step.deferrals < max_deferrals(timeout.total_seconds()):
        step.deferrals += 1
        step.deadline_at = now + timeout
        step.save()
        _event(saga, step.name, SagaEvent.Kind.DEFERRED, step.message_id, "", {"deferral": step.deferrals} | waiting)
        return
    # What the sweep saw of the participant is kept with the resend or the failure, so a deadline
    # that stood can be explained afterwards.
    if step.resends < spec.resends:
        step.resends += 1
        step.deadline_at = now + timeout
        step.save()
        _event(saga, step.name, SagaEvent.Kind.RESEND, step.message_id, "", {"resend": step.resends, "seen": seen})
        outbox.resend(step.message_id)
        return
    log.warning("deadline exceeded", saga_id=str(saga.id), step=step.name, compensation=compensation, seen=seen)
    _event(saga, step.name, SagaEvent.Kind.STATUS, None, "",
           {"deadline_exceeded": "compensation" if compensation else "action", "seen": seen})
    if compensation and step.compensation_attempts < spec.compensation_sends:
        # A silent compensation is late, not refused (a worker that refuses says so): try again.
        _send(saga, definition, step, compensation=True)
    elif compensation:
        _compensation_failed(saga, step, "deadline exceeded")
    elif spec.retriable or definition.past_pivot(step.index):
        # Past the pivot the saga cannot go back: keep trying, with a new attempt, up to its cap.
        _forward_again(saga, definition, step, now, why="deadline exceeded", backoff=False)
    else:
        step.status = StepStatus.TIMED_OUT
        step.error = "deadline exceeded"
        step.finished_at = now
        step.save()
        # The command may still have had its effect: compensate this step too.
        _compensate_from(saga, definition, step.index, reason="deadline_exceeded")


# --- operator actions -------------------------------------------------------------------------
class SagaNotRetriable(Exception):
    pass


def saga_retry(*, saga_id) -> SagaInstance:
    """Resume a saga an operator has looked at: send its failed compensation again, or give its
    stuck forward step a new attempt (and a fresh budget of attempts)."""
    with transaction.atomic():
        saga = SagaInstance.objects.select_for_update().get(id=saga_id)
        definition = definition_of(saga)
        if saga.status == SagaStatus.COMPENSATION_FAILED:
            step = saga.steps.get(status=StepStatus.COMPENSATION_FAILED)
            saga.status = SagaStatus.COMPENSATING
            compensation = True
        elif saga.status == SagaStatus.STUCK:
            step = saga.steps.get(status=StepStatus.STUCK)
            step.attempts_at_resume = step.attempts
            saga.status = SagaStatus.RUNNING
            saga.failure_reason = ""
            compensation = False
        else:
            raise SagaNotRetriable(f"saga {saga.id} is {saga.status}, not compensation_failed or stuck")
        saga.ended_at = None
        _event(saga, step.name, SagaEvent.Kind.STATUS, None, "", {"retry": "requested by an operator"})
        _send(saga, definition, step, compensation=compensation)
        saga_resumed.send(sender=SagaInstance, saga=saga)
        saga.version += 1
        saga.save()
        return saga


class SagaNotResolvable(Exception):
    def __init__(self, message, *, already=False):
        super().__init__(message)
        self.already = already


def saga_resolve(*, saga_id, note: str):
    """Close a parked saga (stuck, or compensation_failed) that a person has dealt with outside the
    system: it becomes `resolved`, a final state that keeps its failure reason, and its order
    follows (saga_ended). Nothing resumes a resolved saga: a late reply is recorded, no more.
    Returns (saga, the status it had)."""
    with transaction.atomic():
        saga = SagaInstance.objects.select_for_update().get(id=saga_id)
        if saga.status == SagaStatus.RESOLVED:
            raise SagaNotResolvable(f"saga {saga.id} is already resolved", already=True)
        if saga.status not in (SagaStatus.COMPENSATION_FAILED, SagaStatus.STUCK):
            raise SagaNotResolvable(f"saga {saga.id} is {saga.status}: only a stuck or compensation_failed "
                                    "saga (a needs_attention order) can be marked resolved")
        was = saga.status
        _event(saga, "", SagaEvent.Kind.STATUS, None, "", {"resolved": note, "was": was})
        _end(saga, SagaStatus.RESOLVED)
        saga.version += 1
        saga.save()
        return saga, was


# --- cancellation -----------------------------------------------------------------------------
def saga_cancel(*, saga_id) -> SagaInstance:
    """Ask a saga to stop and compensate. Refused once it is final or has reached its pivot."""
    with transaction.atomic():
        saga = SagaInstance.objects.select_for_update().get(id=saga_id)
        definition = definition_of(saga)
        if saga.is_final or saga.status == SagaStatus.COMPENSATING:
            raise SagaNotCancellable("already_final", f"the saga is already {saga.status}")
        if definition.past_pivot(saga.current_step):
            raise SagaNotCancellable("past_pivot", "the order is past the point of no return")
        saga.cancel_requested = True
        saga.version += 1
        saga.save()
        _event(saga, "", SagaEvent.Kind.STATUS, None, "", {"cancel_requested": True})
        return saga
