"""Purge what has outlived its retention now (what beat's tick does): `purge [--dry-run]`."""
from django.core.management.base import BaseCommand

from orderhub import retention


class Command(BaseCommand):
    help = "Purge published outbox rows, finished sagas' events, handled dead letters, old inbox rows and " \
           "idempotency keys past their retention (settings RETENTION_*), in short batches."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")

    def handle(self, *args, dry_run=False, **options):
        done = retention.purge(dry_run=dry_run, budget=float("inf"))
        verb = "would purge" if dry_run else "purged"
        for name, count in done.items():
            self.stdout.write(f"{verb} {count:>8}  {name}")
