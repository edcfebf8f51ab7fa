from django.contrib import admin

from orderhub.readonly_admin import InboxAdmin, ReadOnlyAdmin
from workers.notifications.models import Inbox, Notification


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["saga_id", "order_id", "recipient", "subject", "sent_at"]
    search_fields = ["saga_id", "order_id", "recipient"]


admin.site.register(Inbox, InboxAdmin)
