from datetime import timedelta

from django.contrib import admin
from django.db.models import Q
from django.utils import timezone

from orderhub.console import actions, timeline
from orderhub.console.admin_actions import ConsoleAction, ConsoleActionsMixin, list_action
from orderhub.readonly_admin import ReadOnlyAdmin
from sagas.models import FINAL_STATUSES, OutboxMessage, SagaInstance, SagaStatus, StepStatus


class SweepFailingFilter(admin.SimpleListFilter):
    """Sagas the deadline sweep could not handle (it carries on with the others)."""

    title = "deadline sweep"
    parameter_name = "sweep"

    def lookups(self, request, model_admin):
        return [("failing", "failing on a step")]

    def queryset(self, request, queryset):
        if self.value() == "failing":
            return queryset.filter(steps__sweep_failures__gt=0).distinct()
        return queryset


class StuckFilter(admin.SimpleListFilter):
    """Sagas not final that are waiting past a deadline, or have not moved for N minutes."""

    title = "stuck"
    parameter_name = "stuck"
    MINUTES = (5, 30, 120)

    def lookups(self, request, model_admin):
        return [("past_deadline", "waiting past its deadline")] + [
            (str(n), f"not moved for {n} minutes") for n in self.MINUTES]

    def queryset(self, request, queryset):
        waiting = queryset.exclude(status__in=FINAL_STATUSES)
        if self.value() == "past_deadline":
            return waiting.filter(steps__deadline_at__lt=timezone.now(), steps__status__in=[
                StepStatus.RUNNING, StepStatus.COMPENSATING]).distinct()
        if self.value() and self.value().isdigit():
            return waiting.filter(updated_at__lt=timezone.now() - timedelta(minutes=int(self.value())))
        return queryset


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"
    AGES = {"5m": ("older than 5 minutes", timedelta(minutes=5)), "1h": ("older than an hour", timedelta(hours=1)),
            "1d": ("older than a day", timedelta(days=1))}

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.AGES.items()]

    def queryset(self, request, queryset):
        if self.value() in self.AGES:
            return queryset.filter(created_at__lt=timezone.now() - self.AGES[self.value()][1])
        return queryset


PARKED = (SagaStatus.COMPENSATION_FAILED, SagaStatus.STUCK)

RETRY = ConsoleAction(
    "retry", "Retry", "console.retry_saga",
    lambda actor, saga, data: actions.retry_saga(actor, saga.id, data["reason"]),
    applies=lambda saga: saga.status in PARKED,
    explain="A compensation_failed saga sends its failed compensation again; a stuck one gives its forward step "
            "a new attempt. Lift the fault first if there is one (a sandbox fault, a provider outage).")
CANCEL = ConsoleAction(
    "cancel", "Cancel", "console.cancel_saga",
    lambda actor, saga, data: actions.cancel_saga(actor, saga.id, data["reason"]),
    applies=lambda saga: saga.status == SagaStatus.RUNNING and not saga.cancel_requested,
    explain="The saga stops and compensates what it did, once its current step answers. Refused past its pivot.")
RESOLVE = ConsoleAction(
    "resolve", "Mark resolved", "console.resolve_saga",
    lambda actor, saga, data: actions.resolve_saga(actor, saga.id, data["reason"]),
    applies=lambda saga: saga.status in PARKED,
    explain="For a saga dealt with by hand (refunded, released): it and its order become resolved, a final state "
            "that keeps the failure reason. Nothing resumes it afterwards.")
SAGA_ACTIONS = [RETRY, CANCEL, RESOLVE]


def saga_context(saga) -> dict:
    view = timeline.for_saga(saga.id)
    return {"console_saga": view, "console_audit": view.audit}


@admin.register(SagaInstance)
class SagaAdmin(ConsoleActionsMixin, ReadOnlyAdmin):
    list_display = ["id", "saga_type", "definition_version", "status", "current_step", "failure_reason", "cancel_requested", "created_at",
                    "updated_at"]
    list_filter = ["status", "saga_type", "definition_version", StuckFilter, AgeFilter, "failure_reason", SweepFailingFilter]
    search_fields = ["id", "correlation_id"]
    search_help_text = "a saga id, or an order id (the saga's correlation id)"
    date_hierarchy = "created_at"
    exclude = ["context"]
    readonly_fields = ["saga_type", "status", "current_step", "failure_reason", "cancel_requested", "correlation_id",
                       "created_at", "updated_at", "ended_at", "version"]
    console_actions = SAGA_ACTIONS
    actions = [list_action(action, "sagas") for action in SAGA_ACTIONS]

    def get_search_results(self, request, queryset, search_term):
        # A pasted id finds the saga by its own id or its order's: one exact lookup, not LIKE.
        term = search_term.strip()
        try:
            import uuid

            key = uuid.UUID(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(id=key) | Q(correlation_id=str(key))), False

    def console_context(self, request, obj):
        return saga_context(obj)


class PublishFailingFilter(admin.SimpleListFilter):
    title = "publishing"
    parameter_name = "publishing"

    def lookups(self, request, model_admin):
        return [("failing", "unpublished after a failed attempt")]

    def queryset(self, request, queryset):
        if self.value() == "failing":
            return queryset.filter(published_at__isnull=True, publish_attempts__gt=0)
        return queryset


@admin.register(OutboxMessage)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ["id", "message_type", "saga_id", "created_at", "published_at", "publish_attempts", "last_error"]
    list_filter = ["message_type", ("published_at", admin.EmptyFieldListFilter), PublishFailingFilter]
    search_fields = ["id", "saga_id"]
