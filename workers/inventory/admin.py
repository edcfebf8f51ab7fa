from django.contrib import admin

from orderhub.console import actions
from orderhub.console.admin_actions import ConsoleAction, ConsoleActionsMixin, RestockForm
from orderhub.console.models import AuditEntry, Target
from orderhub.readonly_admin import InboxAdmin, ReadOnlyAdmin
from workers.inventory.models import Inbox, Reservation, StockAdjustment, StockItem

RESTOCK = ConsoleAction(
    "restock", "Restock", "console.restock",
    lambda actor, item, data: actions.restock(actor, item.sku, data["quantity"], data["reason"],
                                              request_id=data["request_id"]),
    form=RestockForm,
    explain="Adds the quantity to the available stock. The inventory service owns its data: the change goes to it "
            "as a command and shows here within seconds (Stock adjustments lists each one applied).")


@admin.register(StockItem)
class StockItemAdmin(ConsoleActionsMixin, ReadOnlyAdmin):
    list_display = ["sku", "available"]
    search_fields = ["sku"]
    console_actions = [RESTOCK]

    def console_context(self, request, obj):
        return {"console_audit": list(AuditEntry.objects.filter(target_type=Target.SKU, target_id=obj.sku)[:100])}


@admin.register(StockAdjustment)
class StockAdjustmentAdmin(ReadOnlyAdmin):
    list_display = ["applied_at", "sku", "quantity", "available_after", "operator", "reason"]
    list_filter = ["sku"]
    search_fields = ["sku", "operator", "reason"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ["saga_id", "order_id", "status", "created_at", "released_at"]
    list_filter = ["status"]
    search_fields = ["saga_id", "order_id"]


admin.site.register(Inbox, InboxAdmin)
