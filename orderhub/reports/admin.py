"""The sales projection, read-only: written by the projection alone (`manage.py projections
rebuild` recomputes it)."""
from django.contrib import admin

from orderhub.readonly_admin import ReadOnlyAdmin
from orderhub.reports.models import DailySales, OutcomeCount, SkuDailySales


@admin.register(DailySales)
class DailySalesAdmin(ReadOnlyAdmin):
    list_display = ("day", "orders", "units", "revenue")
    date_hierarchy = "day"


@admin.register(SkuDailySales)
class SkuDailySalesAdmin(ReadOnlyAdmin):
    list_display = ("day", "sku", "units", "revenue")
    list_filter = ("day",)
    search_fields = ("sku",)


@admin.register(OutcomeCount)
class OutcomeCountAdmin(ReadOnlyAdmin):
    list_display = ("status", "orders")
