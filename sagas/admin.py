from django.contrib import admin

from orderhub.readonly_admin import ReadOnlyAdmin, ReadOnlyInline
from sagas.models import OutboxMessage, SagaEvent, SagaInstance, SagaStep


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    fields = ["index", "name", "status", "attempts", "compensation_attempts", "started_at", "finished_at",
              "compensated_at", "deadline_at", "error", "sweep_failures", "sweep_error"]
    readonly_fields = fields


class SagaEventInline(ReadOnlyInline):
    model = SagaEvent
    fields = ["created_at", "kind", "step", "message_type", "message_id", "body"]
    readonly_fields = fields


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


class PublishFailingFilter(admin.SimpleListFilter):
    title = "publishing"
    parameter_name = "publishing"

    def lookups(self, request, model_admin):
        return [("failing", "unpublished after a failed attempt")]

    def queryset(self, request, queryset):
        if self.value() == "failing":
            return queryset.filter(published_at__isnull=True, publish_attempts__gt=0)
        return queryset


@admin.register(SagaInstance)
class SagaAdmin(ReadOnlyAdmin):
    list_display = ["id", "saga_type", "status", "current_step", "failure_reason", "cancel_requested", "created_at",
                    "updated_at"]
    list_filter = ["status", "saga_type", "failure_reason", SweepFailingFilter, "created_at"]
    search_fields = ["id", "correlation_id"]
    date_hierarchy = "created_at"
    inlines = [SagaStepInline, SagaEventInline]


@admin.register(OutboxMessage)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ["id", "message_type", "saga_id", "created_at", "published_at", "publish_attempts", "last_error"]
    list_filter = ["message_type", ("published_at", admin.EmptyFieldListFilter), PublishFailingFilter]
    search_fields = ["id", "saga_id"]
