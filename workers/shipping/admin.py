from django.contrib import admin

from orderhub.readonly_admin import InboxAdmin, ReadOnlyAdmin
from workers.shipping.models import Inbox, Shipment


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdmin):
    list_display = ["saga_id", "order_id", "status", "tracking_number", "created_at"]
    list_filter = ["status"]
    search_fields = ["saga_id", "order_id", "tracking_number"]


admin.site.register(Inbox, InboxAdmin)
