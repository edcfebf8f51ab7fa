from django.contrib import admin

from orderhub.deadletters.models import DeadLetter
from orderhub.readonly_admin import ReadOnlyAdmin


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = ["id", "queue", "message_type", "reason", "death_count", "status", "first_seen", "last_seen"]
    list_filter = ["status", "queue"]
    search_fields = ["message_key", "reason"]
