"""API keys in the admin: whose, which name, made, last used, expiry, revoked; never the key (it
is not stored) nor its hash. Keys are made with `manage.py api_keys create`; here they can be
revoked."""
from django.contrib import admin, messages

from orderhub.apikeys.models import ClientAPIKey
from orderhub.apikeys.services import key_revoke


@admin.register(ClientAPIKey)
class ClientAPIKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "client", "created", "last_used_at", "expiry_date", "revoked"]
    list_filter = ["revoked", "created"]
    search_fields = ["prefix", "name", "client__username"]
    fields = ["prefix", "name", "client", "created", "last_used_at", "expiry_date", "revoked"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected keys (for good)", permissions=["delete"])
    def revoke(self, request, queryset):
        done = sum(key_revoke(prefix=key.prefix) for key in queryset)
        self.message_user(request, f"revoked {done} key(s)", messages.SUCCESS)


try:  # the library's own (unused) APIKey model: not in the admin
    from rest_framework_api_key.models import APIKey

    admin.site.unregister(APIKey)
except admin.sites.NotRegistered:
    pass
