"""The sales projection: a read model built from the domain events (orderhub/events.py), in the
orderhub database, never written by anything but the projection (orderhub/reports/projection.py).

Days are the UTC day an order was placed. Revenue is what completed orders were charged."""
from django.db import models


class DailySales(models.Model):
    day = models.DateField(primary_key=True)
    orders = models.PositiveIntegerField(default=0)  # completed orders placed that day
    units = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    class Meta:
        ordering = ["day"]
        verbose_name_plural = "daily sales"


class SkuDailySales(models.Model):
    day = models.DateField()
    sku = models.CharField(max_length=64)
    units = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)

    class Meta:
        ordering = ["day", "sku"]
        verbose_name_plural = "daily sales by sku"
        constraints = [models.UniqueConstraint(fields=["day", "sku"], name="sku_daily_sales_unique")]


class OutcomeCount(models.Model):
    """Ended orders by their status now (needs_attention moves to resolved when an operator closes one)."""

    status = models.CharField(max_length=20, primary_key=True)
    orders = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["status"]


class ProjectedOrder(models.Model):
    """What the projection has counted for each order: a late or repeated event changes nothing."""

    order_id = models.UUIDField(primary_key=True)
    status = models.CharField(max_length=20)


class ProcessedEvent(models.Model):
    """Every event id applied: a redelivered event (same id) is skipped."""

    event_id = models.CharField(max_length=100, primary_key=True)
    applied_at = models.DateTimeField(auto_now_add=True)
