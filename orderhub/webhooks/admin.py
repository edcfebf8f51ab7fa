"""Webhook endpoints and deliveries, read-only: clients register endpoints through the API; a dead
delivery is dead-lettered, and replaying its letter (Dead letters) tries it again. No secret is
ever shown here."""
from django.contrib import admin

from orderhub.readonly_admin import ReadOnlyAdmin
from orderhub.webhooks.models import WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ("url", "client", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("url", "client__username")
    fields = ("id", "client", "url", "description", "active", "created_at", "previous_secret_expires_at")
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("event_type", "order_id", "endpoint", "status", "attempts", "last_error", "created_at",
                    "delivered_at")
    list_filter = ("status", "event_type")
    search_fields = ("order_id", "event_id", "endpoint__url")
    list_select_related = ("endpoint",)
    readonly_fields = ("id", "endpoint", "event_id", "event_type", "order_id", "status", "attempts",
                       "next_attempt_at", "last_status_code", "last_error", "created_at", "delivered_at",
                       "dead_lettered_at", "event")
    fields = readonly_fields
