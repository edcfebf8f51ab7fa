"""Switch the sandbox payment provider's faults: `sandbox lift|restore tok_void_broken` (a standing
fault) and `sandbox outage on|off` (every authorize, capture and void times out)."""
from django.core.management.base import BaseCommand, CommandError

from workers.payments import provider

STANDING_FAULTS = ["tok_void_broken"]


class Command(BaseCommand):
    help = "sandbox lift|restore tok_void_broken | sandbox outage on|off"

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["lift", "restore", "outage"])
        parser.add_argument("what", help="the fault (lift, restore), or on|off (outage)")

    def handle(self, *args, action, what, **options):
        if action == "outage":
            if what not in ("on", "off"):
                raise CommandError("sandbox outage on|off")
            provider.outage(what == "on")
            self.stdout.write(f"provider outage: {what}")
            return
        if what not in STANDING_FAULTS:
            raise CommandError(f"a standing fault: {', '.join(STANDING_FAULTS)}")
        provider.fault_lift(what, lifted=action == "lift")
        self.stdout.write(f"{what}: {'lifted' if action == 'lift' else 'in force'}")
