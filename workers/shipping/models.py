"""Shipping's own data: one shipment per saga."""
from django.db import models

from workers.messaging import InboxMessage


class Shipment(models.Model):
    class Status(models.TextChoices):
        CREATED = "created"
        CANCELLED = "cancelled"
        TOMBSTONE = "tombstone"

    saga_id = models.UUIDField(unique=True)
    order_id = models.UUIDField(db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    address = models.JSONField(default=dict)
    tracking_number = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "shipping_shipment"

    def __str__(self):
        return f"shipment {self.tracking_number or self.saga_id} ({self.status})"


class Inbox(InboxMessage):
    class Meta:
        db_table = "shipping_inbox"
