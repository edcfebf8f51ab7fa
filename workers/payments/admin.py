from django.contrib import admin

from orderhub.readonly_admin import InboxAdmin, ReadOnlyAdmin
from orderhub.console import actions
from orderhub.console.admin_actions import ConsoleAction, ConsoleActionsMixin
from workers.payments import provider
from workers.payments.models import Inbox, Payment, ProviderCharge, SandboxFault


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["saga_id", "order_id", "amount", "status", "provider_ref", "created_at"]
    list_filter = ["status"]
    search_fields = ["saga_id", "order_id", "provider_ref"]


@admin.register(ProviderCharge)
class ProviderChargeAdmin(ReadOnlyAdmin):
    list_display = ["ref", "token", "amount", "status", "decline_reason", "created_at"]
    list_filter = ["status", "token"]
    search_fields = ["ref", "idempotency_key"]


admin.site.register(Inbox, InboxAdmin)


def _switch(lifted):
    def run(actor, fault, data):
        name = fault.key.removeprefix("lift:")
        if fault.lifted == lifted:
            return actions.Result(False, f"nothing to do: {name} is already {'lifted' if lifted else 'in force'}")
        provider.fault_lift(name, lifted=lifted)
        return actions.Result(True, f"{name}: {'lifted' if lifted else 'in force again'} (reason: {data['reason']})")

    return run


@admin.register(SandboxFault)
class SandboxFaultAdmin(ConsoleActionsMixin, ReadOnlyAdmin):
    """The sandbox payment provider's standing faults (`manage.py sandbox lift|restore`)."""

    list_display = ["key", "lifted", "failures"]
    console_actions = [
        ConsoleAction("lift", "Lift fault", "payments.change_sandboxfault", _switch(True),
                      applies=lambda fault: fault.key.startswith("lift:") and not fault.lifted,
                      explain="The sandbox provider stops failing this way: the next try succeeds."),
        ConsoleAction("restore", "Restore fault", "payments.change_sandboxfault", _switch(False),
                      applies=lambda fault: fault.key.startswith("lift:") and fault.lifted),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(key__startswith="lift:")

    def changelist_view(self, request, extra_context=None):
        from workers.payments.management.commands.sandbox import STANDING_FAULTS

        for name in STANDING_FAULTS:  # listed before they are first lifted
            SandboxFault.objects.get_or_create(key=f"lift:{name}")
        return super().changelist_view(request, extra_context)
