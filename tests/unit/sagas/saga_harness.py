"""Drive a saga definition reply by reply without a broker, the way Eventuate's saga unit tests do.

    given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_failure("payment_declined")
        .expect_command("inventory.release").reply_success()
        .expect_status("compensated")

Commands are read back from the outbox (the tests run inside a transaction that never commits, so
nothing is published); replies are built from them and applied with `sagas.engine.reply_apply`.
`sweep(now=...)` runs the deadline sweep once the relay has published what the outbox holds (a
command still in the outbox is our backlog, never a participant's silence).
"""
from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from contracts import Command, Reply
from sagas import engine
from sagas.models import FINAL_STATUSES, OutboxMessage, SagaInstance, SagaStep


def relayed():
    """Mark every command in the outbox published, as the relay does once the transaction that
    wrote it commits (which a test's transaction never does)."""
    OutboxMessage.objects.filter(published_at__isnull=True).update(published_at=timezone.now())


def sweep(**kwargs) -> int:
    """The deadline sweep, with every command written so far published."""
    relayed()
    return engine.deadlines_sweep(**kwargs)


def place_order_context(**overrides) -> dict:
    """A context that satisfies every place_order command contract."""
    context = {
        "order_id": str(uuid.uuid4()),
        "items": [{"sku": "BOOK-1", "quantity": 2}, {"sku": "MUG-1", "quantity": 1}],
        "total": "37.50",
        "payment_token": "tok_visa",
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "12 St James's Square",
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country": "GB",
        },
    }
    return context | overrides


def given(definition: engine.Saga, context: dict) -> SagaScenario:
    """Start a saga of `definition` the way a service does: inside the caller's transaction."""
    with transaction.atomic():
        saga = engine.saga_start(
            definition=definition, context=context, correlation_id=context.get("order_id") or str(uuid.uuid4())
        )
    return SagaScenario(saga.id)


def follow(saga_id) -> SagaScenario:
    """Drive a saga somebody else started (an order placed through the API, say)."""
    return SagaScenario(saga_id)


class SagaScenario:
    def __init__(self, saga_id):
        self.saga_id = saga_id
        self.definition = engine.definition_of(SagaInstance.objects.get(id=saga_id))
        self.command: Command | None = None  # the command the saga now waits on
        self.sent: list[Command] = []  # every command the scenario has seen, in order
        self.last_reply: Reply | None = None
        self._seen_outbox_ids: set[str] = set()

    # --- reading the saga ---------------------------------------------------------------------
    @property
    def saga(self) -> SagaInstance:
        return SagaInstance.objects.get(id=self.saga_id)

    def step(self, name) -> SagaStep:
        return SagaStep.objects.get(saga_id=self.saga_id, name=name)

    def step_statuses(self) -> dict[str, str]:
        return dict(SagaStep.objects.filter(saga_id=self.saga_id).order_by("index").values_list("name", "status"))

    def compensation_order(self) -> list[str]:
        """Names of the compensated steps, in the order their compensations finished."""
        steps = SagaStep.objects.filter(saga_id=self.saga_id, compensated_at__isnull=False)
        return list(steps.order_by("compensated_at").values_list("name", flat=True))

    @property
    def compensations_sent(self) -> list[str]:
        compensations = {step.compensate for step in self.definition.steps if step.compensate}
        return [command.type for command in self.sent if command.type in compensations]

    def state(self) -> dict:
        """Everything a reply may change except the history, for before/after comparisons."""
        saga = self.saga
        outbox_ids = OutboxMessage.objects.filter(saga_id=self.saga_id).values_list("id", flat=True)
        return {
            "saga": (saga.status, saga.current_step, saga.version, saga.context, saga.failure_reason,
                     saga.cancel_requested, saga.ended_at),
            "steps": list(SagaStep.objects.filter(saga_id=self.saga_id).order_by("index").values()),
            "outbox": sorted(str(pk) for pk in outbox_ids),
        }

    # --- commands -----------------------------------------------------------------------------
    def expect_command(self, message_type: str, *, attempt: int = 1) -> SagaScenario:
        """The saga has sent exactly one new command since the last one, of this type."""
        row = self._new_outbox_row()
        command = Command.from_dict(row.body)
        assert command.to_dict() == row.body, "the outbox body does not round-trip through Command.from_dict"
        assert command.type == message_type, f"expected {message_type!r}, the saga sent {command.type!r}"
        assert command.attempt == attempt, f"expected attempt {attempt} of {message_type!r}, got {command.attempt}"
        assert str(row.id) == command.message_id
        awaited = self.step(command.step)
        assert str(awaited.message_id) == command.message_id, f"step {command.step!r} does not await this command"
        self.command = command
        self.sent.append(command)
        return self

    def expect_no_command(self) -> SagaScenario:
        unseen = self._unseen_outbox_rows()
        assert not unseen, f"expected no new command, the saga sent {[row.message_type for row in unseen]}"
        return self

    def _unseen_outbox_rows(self) -> list[OutboxMessage]:
        rows = OutboxMessage.objects.commands().filter(saga_id=self.saga_id)
        return [row for row in rows.order_by("-created_at") if str(row.id) not in self._seen_outbox_ids]

    def _new_outbox_row(self) -> OutboxMessage:
        unseen = self._unseen_outbox_rows()
        assert len(unseen) == 1, f"expected one new command, the saga sent {[row.message_type for row in unseen]}"
        newest = unseen[0]
        self._seen_outbox_ids.add(str(newest.id))
        return newest

    # --- replies ------------------------------------------------------------------------------
    def reply_success(self, **data) -> SagaScenario:
        return self._reply_to_awaited("succeeded", data=data)

    def reply_failure(self, reason: str, detail: str = "") -> SagaScenario:
        return self._reply_to_awaited("failed", reason=reason, detail=detail)

    def reply_unknown(self, reason: str = "retries_exhausted", detail: str = "") -> SagaScenario:
        return self._reply_to_awaited("unknown", reason=reason, detail=detail)

    def succeed(self, *message_types: str) -> SagaScenario:
        """Expect each command in turn and answer it with success."""
        for message_type in message_types:
            self.expect_command(message_type).reply_success()
        return self

    def apply(self, reply: Reply) -> str:
        """Apply any reply, well-formed or not, and return what the engine did with it."""
        self.last_reply = reply
        return engine.reply_apply(reply)

    def _reply_to_awaited(self, outcome, **fields) -> SagaScenario:
        assert self.command is not None, "call expect_command() before replying"
        outcome_applied = self.apply(Reply.to(self.command, outcome, **fields))
        assert outcome_applied == "applied", f"the reply to {self.command.type!r} was {outcome_applied}"
        self.command = None
        return self

    # --- outcomes -----------------------------------------------------------------------------
    def expect_status(self, status: str, *, failure_reason: str | None = None) -> SagaScenario:
        saga = self.saga
        assert saga.status == status, f"expected saga status {status!r}, got {saga.status!r}"
        if failure_reason is not None:
            assert saga.failure_reason == failure_reason
        if status in FINAL_STATUSES:
            assert saga.ended_at is not None
            self.expect_no_command()
        return self
