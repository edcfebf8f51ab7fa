from django.contrib import admin

from orderhub.readonly_admin import InboxAdmin, ReadOnlyAdmin
from workers.inventory.models import Inbox, Reservation, StockItem


@admin.register(StockItem)
class StockItemAdmin(ReadOnlyAdmin):
    list_display = ["sku", "available"]
    search_fields = ["sku"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = ["saga_id", "order_id", "status", "created_at", "released_at"]
    list_filter = ["status"]
    search_fields = ["saga_id", "order_id"]


admin.site.register(Inbox, InboxAdmin)
