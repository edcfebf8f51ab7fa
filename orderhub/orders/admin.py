from django.contrib import admin

from orderhub.orders.models import Order, OrderItem, Product
from orderhub.readonly_admin import ReadOnlyInline


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price"]
    search_fields = ["sku", "name"]


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fields = ["sku", "name", "quantity", "unit_price"]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "client", "status", "failure_reason", "total", "created_at"]
    list_filter = ["status", "failure_reason", "created_at"]
    search_fields = ["id", "saga_id", "client__username"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Order._meta.fields]
    inlines = [OrderItemInline]

    def has_add_permission(self, request):
        return False
