"""Saga state in the orchestrator's database: one row per saga, one per step, a history, the outbox."""
import uuid

from django.db import models


class SagaStatus(models.TextChoices):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    # Past its pivot, a forward step ran out of attempts: parked for an operator (`sagas retry`).
    STUCK = "stuck"
    # A stuck or compensation_failed saga an operator closed by hand (`sagas resolve`, the admin).
    RESOLVED = "resolved"


FINAL_STATUSES = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED, SagaStatus.STUCK,
                  SagaStatus.RESOLVED)


class StepStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    TIMED_OUT = "timed_out"  # no reply by the deadline, resends exhausted: compensated too
    RETRY_WAIT = "retry_wait"  # a step past the pivot waiting for its next attempt
    UNKNOWN = "unknown"  # the worker could not tell whether it had its effect: compensated too
    STUCK = "stuck"  # past the pivot and out of attempts: waits for an operator


class SagaInstance(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    saga_type = models.CharField(max_length=100)
    # The version of its definition it started with, and is driven by to its end (engine.VERSIONS);
    # only `sagas move` changes it, where that is safe.
    definition_version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=30, choices=SagaStatus.choices, default=SagaStatus.RUNNING)
    current_step = models.PositiveIntegerField(default=0)
    correlation_id = models.CharField(max_length=100, db_index=True)
    context = models.JSONField(default=dict)
    failure_reason = models.CharField(max_length=100, blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    version = models.PositiveIntegerField(default=0)
    # The W3C trace context of the request that started the saga (orderhub/tracing.py): every
    # command the saga sends joins that trace. Empty when tracing was off.
    trace = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "saga"
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self):
        return f"{self.saga_type} {self.id} ({self.status})"

    @property
    def is_final(self):
        return self.status in FINAL_STATUSES


class SagaStep(models.Model):
    saga = models.ForeignKey(SagaInstance, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=30, choices=StepStatus.choices, default=StepStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    compensation_attempts = models.PositiveIntegerField(default=0)
    # Times the command now awaited was resent (same message id) after its deadline passed.
    resends = models.PositiveIntegerField(default=0)
    # Times its deadline was put off because the participant's queue still held a backlog.
    deferrals = models.PositiveIntegerField(default=0)
    # The command this step now waits on; a reply to anything else is stale.
    message_id = models.UUIDField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    compensated_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # Attempts made before an operator last resumed the step; the cap counts the ones since.
    attempts_at_resume = models.PositiveIntegerField(default=0)
    # The deadline sweep could not handle this step (a bug, a definition gone): the last error,
    # and how often. The sweep carries on with the other sagas and comes back to this one later.
    sweep_error = models.TextField(blank=True, default="")
    sweep_failures = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "saga_step"
        ordering = ["saga", "index"]
        constraints = [models.UniqueConstraint(fields=["saga", "index"], name="saga_step_unique_index")]
        indexes = [models.Index(fields=["status", "deadline_at"])]

    def __str__(self):
        return f"{self.index}:{self.name} ({self.status})"


class SagaEvent(models.Model):
    """The saga's history: every command sent and every reply received, stale ones included."""

    class Kind(models.TextChoices):
        COMMAND = "command"
        REPLY = "reply"
        STALE_REPLY = "stale_reply"  # a copy of a reply already seen, or one for no step
        LATE_REPLY = "late_reply"  # to an earlier command of its step (engine._on_late_reply)
        RESEND = "resend"
        # A deadline put off: the participant's queue still held messages, the command among them.
        DEFERRED = "deferred"
        STATUS = "status"

    saga = models.ForeignKey(SagaInstance, on_delete=models.CASCADE, related_name="events")
    step = models.CharField(max_length=100, blank=True, default="")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message_id = models.UUIDField(null=True, blank=True)
    message_type = models.CharField(max_length=100, blank=True, default="")
    body = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "saga_event"
        ordering = ["saga", "id"]


class OutboxQuerySet(models.QuerySet):
    # Domain events (orderhub/events.py) share the outbox; their type starts with "event:".
    def commands(self):
        return self.exclude(message_type__startswith="event:")

    def events(self):
        return self.filter(message_type__startswith="event:")


class OutboxMessage(models.Model):
    """A command written in the same transaction as the saga state that decided to send it (or a
    domain event, in the transaction of the change it announces)."""

    objects = OutboxQuerySet.as_manager()

    id = models.UUIDField(primary_key=True)  # the command's message_id
    message_type = models.CharField(max_length=100)
    saga_id = models.UUIDField(db_index=True)
    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "saga_outbox"
        indexes = [
            models.Index(
                fields=["created_at"], name="outbox_unpublished", condition=models.Q(published_at__isnull=True)
            )
        ]

    def __str__(self):
        return f"{self.message_type} {self.id}"
