"""Switch the sandbox payment provider's standing faults: `sandbox lift|restore tok_void_broken`."""
from django.core.management.base import BaseCommand

from workers.payments import provider

STANDING_FAULTS = ["tok_void_broken"]


class Command(BaseCommand):
    help = "Lift or restore a standing sandbox fault of the payment provider."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["lift", "restore"])
        parser.add_argument("fault", choices=STANDING_FAULTS)

    def handle(self, *args, action, fault, **options):
        provider.fault_lift(fault, lifted=action == "lift")
        self.stdout.write(f"{fault}: {'lifted' if action == 'lift' else 'in force'}")
