from django.contrib import admin

from orderhub.console.models import AuditEntry
from orderhub.readonly_admin import ReadOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Every change an operator made, from the admin or the command line."""

    list_display = ["at", "operator", "via", "action", "target_type", "target_id", "reason", "outcome"]
    list_filter = ["action", "via", "target_type", "at"]
    search_fields = ["target_id", "operator", "reason"]
    date_hierarchy = "at"


# API tokens are secrets: the admin lists whose they are and when they were made, never the key.
try:
    from rest_framework.authtoken.admin import TokenAdmin
    from rest_framework.authtoken.models import TokenProxy

    admin.site.unregister(TokenProxy)

    @admin.register(TokenProxy)
    class MaskedTokenAdmin(TokenAdmin):
        list_display = ["masked_key", "user", "created"]
        fields = ["user"]
        search_fields = ["user__username"]

        @admin.display(description="key")
        def masked_key(self, token):
            return f"{token.key[:4]}…"

        def has_change_permission(self, request, obj=None):
            return False
except admin.sites.NotRegistered:  # DRF did not register it (an older version)
    pass
