"""Publish outbox rows that are still unsent (what beat's sweep does), once."""
from django.core.management.base import BaseCommand

from sagas import outbox


class Command(BaseCommand):
    help = "Publish every unsent outbox row now."

    def handle(self, *args, **options):
        self.stdout.write(f"published {outbox.relay()} commands")
