"""Back up every database and the broker's definitions into one folder (orderhub/backup.py)."""
from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from orderhub import backup


class Command(BaseCommand):
    help = "backup [FOLDER]: every database (pg_dump) and RabbitMQ's definitions, with a manifest"

    def add_arguments(self, parser):
        parser.add_argument("folder", nargs="?", help="new or empty (default var/backups/<UTC time>)")

    def handle(self, *args, folder=None, **options):
        target = Path(folder or f"var/backups/{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        try:
            manifest = backup.backup(target)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from None
        for alias, part in manifest["databases"].items():
            self.stdout.write(f"{alias:14} {part['name']:28} {part['bytes']:>12,} bytes")
        self.stdout.write(f"rabbitmq       vhost {manifest['rabbitmq']['vhost']} definitions")
        self.stdout.write(f"backup written to {target}")
