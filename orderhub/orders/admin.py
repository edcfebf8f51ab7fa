from django.contrib import admin

from orderhub.console import actions
from orderhub.console.admin_actions import ConsoleAction, ConsoleActionsMixin, list_action
from orderhub.orders.models import Order, OrderItem, Product
from orderhub.readonly_admin import ReadOnlyInline
from sagas.models import SagaInstance


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price"]
    search_fields = ["sku", "name"]


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fields = ["sku", "name", "quantity", "unit_price"]
    readonly_fields = fields


def _saga_of(order):
    return SagaInstance.objects.filter(id=order.saga_id).first() if order.saga_id else None


def _on_saga(saga_action):
    """The saga's action, offered on its order's page."""

    def run(actor, order, data):
        if not order.saga_id:
            raise actions.ActionRefused(f"order {order.id} has no saga")
        return saga_action.run(actor, _saga_of(order) or SagaInstance(id=order.saga_id), data)

    def applies(order):
        saga = _saga_of(order)
        return saga is not None and saga_action.applies(saga)

    return ConsoleAction(saga_action.name, saga_action.label, saga_action.permission, run, applies=applies,
                         explain=saga_action.explain)


def _order_actions():
    from sagas.admin import SAGA_ACTIONS

    return [_on_saga(action) for action in SAGA_ACTIONS]


@admin.register(Order)
class OrderAdmin(ConsoleActionsMixin, admin.ModelAdmin):
    """Orders are read here and acted on through their saga; never added, changed or deleted."""

    list_display = ["id", "client", "status", "failure_reason", "total", "created_at"]
    list_filter = ["status", "failure_reason", "created_at"]
    search_fields = ["id", "saga_id", "client__username"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Order._meta.fields]
    inlines = [OrderItemInline]

    @property
    def console_actions(self):
        return _order_actions()

    def get_actions(self, request):
        found = super().get_actions(request)
        extra = {}
        for action in _order_actions():
            run = list_action(action, "orders")
            extra[run.__name__] = (run, run.__name__, run.short_description)
        merged = {**found, **extra}
        return {name: entry for name, entry in merged.items()
                if not hasattr(entry[0], "console_permission") or request.user.has_perm(entry[0].console_permission)}

    def console_context(self, request, obj):
        from sagas.admin import saga_context

        saga = _saga_of(obj)
        return saga_context(saga) if saga is not None else {}

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
