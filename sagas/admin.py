from django.contrib import admin

from orderhub.readonly_admin import ReadOnlyAdmin, ReadOnlyInline
from sagas.models import OutboxMessage, SagaEvent, SagaInstance, SagaStep


class SagaStepInline(ReadOnlyInline):
    model = SagaStep
    fields = ["index", "name", "status", "attempts", "compensation_attempts", "started_at", "finished_at",
              "compensated_at", "deadline_at", "error"]
    readonly_fields = fields


class SagaEventInline(ReadOnlyInline):
    model = SagaEvent
    fields = ["created_at", "kind", "step", "message_type", "message_id", "body"]
    readonly_fields = fields


@admin.register(SagaInstance)
class SagaAdmin(ReadOnlyAdmin):
    list_display = ["id", "saga_type", "status", "current_step", "failure_reason", "cancel_requested", "created_at",
                    "updated_at"]
    list_filter = ["status", "saga_type", "failure_reason", "created_at"]
    search_fields = ["id", "correlation_id"]
    date_hierarchy = "created_at"
    inlines = [SagaStepInline, SagaEventInline]


@admin.register(OutboxMessage)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ["id", "message_type", "saga_id", "created_at", "published_at", "publish_attempts"]
    list_filter = ["message_type", ("published_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "saga_id"]
