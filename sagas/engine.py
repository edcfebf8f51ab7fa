"""Saga definitions (Saga, Step, Retry) and the state machine that applies replies to them.

The engine knows nothing about orders: it starts sagas with a context, sends each step's command
through the outbox, applies replies under a row lock, and announces the end with `saga_ended`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import django.dispatch
from django.db import transaction
from django.utils import timezone

from contracts import Command, Reply, message_types
from sagas import outbox
from sagas.models import SagaEvent, SagaInstance, SagaStatus, SagaStep, StepStatus

log = logging.getLogger(__name__)

# Sent inside the transaction that ends a saga, so listeners update their rows atomically with it.
saga_ended = django.dispatch.Signal()  # kwargs: saga

REGISTRY: dict[str, Saga] = {}


class InvalidSagaDefinition(Exception):
    pass


class SagaNotCancellable(Exception):
    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Retry:
    """How a step's transient failures are retried: attempts, exponential backoff, jitter."""

    attempts: int = 3
    initial: float = 0.5
    coefficient: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2
    non_retryable: tuple[str, ...] = ()

    def __post_init__(self):
        if self.attempts < 1 or self.initial < 0 or self.coefficient < 1 or self.maximum < self.initial:
            raise InvalidSagaDefinition(f"invalid retry policy {self}")
        if not 0 <= self.jitter <= 1:
            raise InvalidSagaDefinition(f"retry jitter must be within 0..1, got {self.jitter}")

    def to_dict(self):
        return {
            "attempts": self.attempts,
            "initial": self.initial,
            "coefficient": self.coefficient,
            "maximum": self.maximum,
            "jitter": self.jitter,
            "non_retryable": list(self.non_retryable),
        }


@dataclass(frozen=True)
class Step:
    name: str
    command: str
    compensate: str | None = None
    pivot: bool = False
    retriable: bool = False
    retry: Retry = field(default_factory=Retry)
    deadline: float = 30.0  # seconds a command may go unanswered


class Saga:
    """A saga declared as a table of steps; validated when it is declared (at import)."""

    def __init__(self, name: str, *steps: Step):
        self.name = name
        self.steps = tuple(steps)
        self._validate()
        self.pivot_index = next((i for i, s in enumerate(self.steps) if s.pivot), None)
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
        if self.name in REGISTRY:
            raise InvalidSagaDefinition(f"{where}: a saga with this name is already defined")

    def past_pivot(self, index: int) -> bool:
        """Whether the step at `index` is the pivot or after it (the saga can no longer go back)."""
        return self.pivot_index is not None and index >= self.pivot_index

    def __repr__(self):
        return f"Saga({self.name!r}, {len(self.steps)} steps)"


# --- starting ---------------------------------------------------------------------------------
def saga_start(*, definition: Saga, context: dict, correlation_id: str) -> SagaInstance:
    """Create the saga and queue its first command. Call inside the caller's transaction."""
    saga = SagaInstance.objects.create(
        saga_type=definition.name, correlation_id=correlation_id, context=context
    )
    SagaStep.objects.bulk_create(
        SagaStep(saga=saga, index=i, name=step.name) for i, step in enumerate(definition.steps)
    )
    _send(saga, definition, saga.steps.get(index=0), compensation=False)
    return saga


# --- applying replies -------------------------------------------------------------------------
def reply_apply(reply: Reply) -> str:
    """Apply one reply in one transaction with the saga row locked. Returns what happened."""
    with transaction.atomic():
        saga = SagaInstance.objects.select_for_update().filter(id=reply.saga_id).first()
        if saga is None:
            log.warning("reply for unknown saga ignored saga_id=%s message_id=%s", reply.saga_id, reply.message_id)
            return "unknown"
        step = saga.steps.filter(name=reply.step).first()
        awaited = step is not None and step.status in (StepStatus.RUNNING, StepStatus.COMPENSATING)
        if not awaited or str(step.message_id) != reply.in_reply_to:
            _event(saga, reply.step, SagaEvent.Kind.STALE_REPLY, reply.message_id, "", reply.to_dict())
            log.info("stale or duplicate reply ignored saga_id=%s step=%s", saga.id, reply.step)
            return "stale"
        _event(saga, step.name, SagaEvent.Kind.REPLY, reply.message_id, "", reply.to_dict())
        definition = REGISTRY[saga.saga_type]
        if step.status == StepStatus.RUNNING:
            _on_action_reply(saga, definition, step, reply)
        else:
            _on_compensation_reply(saga, definition, step, reply)
        saga.version += 1
        saga.save()
        return "applied"


def _on_action_reply(saga, definition, step, reply):
    now = timezone.now()
    step.finished_at = now
    step.deadline_at = None
    if reply.succeeded:
        step.status = StepStatus.SUCCEEDED
        step.save()
        saga.context.setdefault("results", {})[step.name] = reply.data
        if saga.cancel_requested and not definition.past_pivot(step.index):
            _compensate_from(saga, definition, step.index, reason="cancelled_by_client")
        elif step.index + 1 < len(definition.steps):
            saga.current_step = step.index + 1
            _send(saga, definition, saga.steps.get(index=saga.current_step), compensation=False)
        else:
            _end(saga, SagaStatus.COMPLETED)
        return
    step.error = f"{reply.reason}: {reply.detail}".strip(": ")
    if definition.steps[step.index].retriable:
        # Retriable steps (after the pivot) never compensate: they are sent again until they succeed.
        step.save()
        _send(saga, definition, step, compensation=False)
        return
    step.status = StepStatus.FAILED
    step.save()
    _compensate_from(saga, definition, step.index - 1, reason=reply.reason)


def _on_compensation_reply(saga, definition, step, reply):
    now = timezone.now()
    step.deadline_at = None
    if reply.succeeded:
        step.status = StepStatus.COMPENSATED
        step.compensated_at = now
        step.save()
        _compensate_from(saga, definition, step.index - 1, reason=saga.failure_reason)
        return
    step.status = StepStatus.COMPENSATION_FAILED
    step.error = f"compensation failed: {reply.reason}: {reply.detail}".strip(": ")
    step.save()
    _end(saga, SagaStatus.COMPENSATION_FAILED)


def _compensate_from(saga, definition, index, *, reason):
    """Compensate the completed steps from `index` down to 0, one at a time, in reverse order."""
    saga.status = SagaStatus.COMPENSATING
    saga.failure_reason = saga.failure_reason or reason or ""
    for candidate in saga.steps.filter(index__lte=index, status=StepStatus.SUCCEEDED).order_by("-index"):
        if definition.steps[candidate.index].compensate:
            saga.current_step = candidate.index
            _send(saga, definition, candidate, compensation=True)
            return
    _end(saga, SagaStatus.COMPENSATED)


def _end(saga, status):
    saga.status = status
    saga.ended_at = timezone.now()
    _event(saga, "", SagaEvent.Kind.STATUS, None, "", {"status": status, "reason": saga.failure_reason})
    saga_ended.send(sender=SagaInstance, saga=saga)


# --- sending ----------------------------------------------------------------------------------
def _send(saga, definition, step, *, compensation: bool):
    spec = definition.steps[step.index]
    now = timezone.now()
    if compensation:
        step.compensation_attempts += 1
        step.status = StepStatus.COMPENSATING
        attempt, message_type = step.compensation_attempts, spec.compensate
    else:
        step.attempts += 1
        step.status = StepStatus.RUNNING
        step.started_at = step.started_at or now
        attempt, message_type = step.attempts, spec.command
    command = Command(
        type=message_type,
        saga_id=str(saga.id),
        step=step.name,
        attempt=attempt,
        payload=saga.context,
        correlation_id=saga.correlation_id,
        causation_id=str(step.message_id) if step.message_id else None,
        deadline=(now + timedelta(seconds=spec.deadline)).isoformat(),
    )
    step.message_id = command.message_id
    step.deadline_at = now + timedelta(seconds=spec.deadline)
    step.save()
    _event(saga, step.name, SagaEvent.Kind.COMMAND, command.message_id, message_type, command.to_dict())
    outbox.enqueue(command)


def _event(saga, step, kind, message_id, message_type, body):
    SagaEvent.objects.create(
        saga=saga, step=step, kind=kind, message_id=message_id, message_type=message_type, body=body
    )


# --- cancellation -----------------------------------------------------------------------------
def saga_cancel(*, saga_id) -> SagaInstance:
    """Ask a saga to stop and compensate. Refused once it is final or has reached its pivot."""
    with transaction.atomic():
        saga = SagaInstance.objects.select_for_update().get(id=saga_id)
        definition = REGISTRY[saga.saga_type]
        if saga.is_final or saga.status == SagaStatus.COMPENSATING:
            raise SagaNotCancellable("already_final", f"the saga is already {saga.status}")
        if definition.past_pivot(saga.current_step):
            raise SagaNotCancellable("past_pivot", "the order is past the point of no return")
        saga.cancel_requested = True
        saga.version += 1
        saga.save()
        _event(saga, "", SagaEvent.Kind.STATUS, None, "", {"cancel_requested": True})
        return saga
