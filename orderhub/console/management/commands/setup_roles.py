"""Create (or bring up to date) the `operators` and `viewers` groups. `migrate` does it too."""
from django.core.management.base import BaseCommand

from orderhub.console.roles import setup_roles


class Command(BaseCommand):
    help = "Create or update the operators (act) and viewers (read) groups"

    def handle(self, *args, **options):
        for group, count in setup_roles().items():
            self.stdout.write(f"{group}: {count} permissions")
