from django.contrib import admin

from orderhub.readonly_admin import InboxAdmin, ReadOnlyAdmin
from workers.payments.models import Inbox, Payment, ProviderCharge


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["saga_id", "order_id", "amount", "status", "provider_ref", "created_at"]
    list_filter = ["status"]
    search_fields = ["saga_id", "order_id", "provider_ref"]


@admin.register(ProviderCharge)
class ProviderChargeAdmin(ReadOnlyAdmin):
    list_display = ["ref", "token", "amount", "status", "decline_reason", "created_at"]
    list_filter = ["status", "token"]
    search_fields = ["ref", "idempotency_key"]


admin.site.register(Inbox, InboxAdmin)
