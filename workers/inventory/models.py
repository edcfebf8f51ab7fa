"""Inventory's own data: stock per sku and one reservation per saga."""
from django.db import models

from workers.messaging import InboxMessage


class StockItem(models.Model):
    sku = models.CharField(max_length=64, primary_key=True)
    available = models.PositiveIntegerField()

    class Meta:
        db_table = "inventory_stock"

    def __str__(self):
        return f"{self.sku}: {self.available}"


class Reservation(models.Model):
    class Status(models.TextChoices):
        RESERVED = "reserved"
        RELEASED = "released"
        # A release that came before (or instead of) its reserve: a late reserve is refused.
        TOMBSTONE = "tombstone"

    saga_id = models.UUIDField(unique=True)
    order_id = models.UUIDField(db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    lines = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "inventory_reservation"

    def __str__(self):
        return f"reservation {self.saga_id} ({self.status})"


class StockAdjustment(models.Model):
    """Stock an operator added (orderhub/console `restock`), one row per restock command."""

    message_id = models.UUIDField(unique=True)
    sku = models.CharField(max_length=64, db_index=True)
    quantity = models.IntegerField()
    reason = models.TextField()
    operator = models.CharField(max_length=150)
    available_after = models.PositiveIntegerField()
    applied_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "inventory_stock_adjustment"
        ordering = ["-applied_at"]

    def __str__(self):
        return f"{self.sku} {self.quantity:+d}"


class Inbox(InboxMessage):
    class Meta:
        db_table = "inventory_inbox"
