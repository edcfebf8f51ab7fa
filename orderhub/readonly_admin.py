"""Admin base for records an operator may read but not edit (domain data, history)."""
from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class InboxAdmin(ReadOnlyAdmin):
    """Every domain's inbox: which commands it handled and the reply it sent for each."""

    list_display = ["message_id", "message_type", "saga_id", "attempt", "received_at"]
    list_filter = ["message_type"]
    search_fields = ["message_id", "saga_id"]
