"""API keys: several per client, each with a name, an expiry and its last use. Stored hashed
(djangorestframework-api-key: a public prefix to find it, SHA-512 of the whole key to check it);
the key itself is shown once, when it is made, and never again."""
from django.conf import settings
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class ClientAPIKey(AbstractAPIKey):
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        db_table = "api_key"
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self):
        return f"{self.prefix}… ({self.name}, {self.client})"
