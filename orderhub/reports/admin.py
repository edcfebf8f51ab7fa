from django.contrib import admin

from orderhub.reports.models import DailySales, OutcomeCount, SkuDailySales


class ReadModelAdmin(admin.ModelAdmin):
    """Written by the projection only (`manage.py projections rebuild` to recompute)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DailySales)
class DailySalesAdmin(ReadModelAdmin):
    list_display = ("day", "orders", "units", "revenue")
    date_hierarchy = "day"


@admin.register(SkuDailySales)
class SkuDailySalesAdmin(ReadModelAdmin):
    list_display = ("day", "sku", "units", "revenue")
    list_filter = ("day",)
    search_fields = ("sku",)


@admin.register(OutcomeCount)
class OutcomeCountAdmin(ReadModelAdmin):
    list_display = ("status", "orders")
