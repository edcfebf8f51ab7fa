import secrets
import uuid

from django.conf import settings
from django.db import models

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class WebhookEndpoint(models.Model):
    """A URL a client registered for its orders' final states. The secret signs every delivery; it
    is shown to the client once (on creation, and on each rotation) and never in admin. After a
    rotation the previous secret also signs, until `previous_secret_expires_at`."""
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["client", "active"])]

    def __str__(self):
        return self.url


class WebhookDelivery(models.Model):
    """One event to one endpoint: tried until delivered, or dead past its budget."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        DEAD = "dead"  # past its budget (or refused): dead-lettered, for an operator
        CANCELLED = "cancelled"  # its endpoint was removed before it was delivered

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    order_id = models.UUIDField(db_index=True)
    event = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When it is next due; a sender that claims it pushes this past its own timeout (a lease), so a
    # sender that dies mid-request leaves it due again, never lost.
    next_attempt_at = models.DateTimeField()
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    dead_lettered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["endpoint", "event_id"], name="one_delivery_per_endpoint_event")]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="webhook_due", condition=models.Q(status="pending")),
            models.Index(fields=["created_at"], name="webhook_dead", condition=models.Q(status="dead")),
            models.Index(fields=["created_at"], name="webhook_ended",
                         condition=models.Q(status__in=["delivered", "cancelled"])),
        ]

    def __str__(self):
        return f"{self.event_type} {self.order_id} -> {self.endpoint_id} ({self.status})"
