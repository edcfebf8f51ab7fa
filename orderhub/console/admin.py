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


# DRF's plain tokens are gone (hashed into API keys, orderhub/apikeys): not in the admin at all.
try:
    from rest_framework.authtoken.models import TokenProxy

    admin.site.unregister(TokenProxy)
except admin.sites.NotRegistered:
    pass
