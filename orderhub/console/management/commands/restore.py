"""Restore a backup (manage.py backup) onto empty databases and a broker (orderhub/backup.py)."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from orderhub import backup


class Command(BaseCommand):
    help = "restore FOLDER: every database and RabbitMQ's definitions, onto empty servers"

    def add_arguments(self, parser):
        parser.add_argument("folder")

    def handle(self, *args, folder, **options):
        try:
            manifest = backup.restore(Path(folder))
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"restored {', '.join(manifest['databases'])} and RabbitMQ's definitions from a backup "
                          f"started at {manifest['started_at']}")
        self.stdout.write("next: start the processes, then `manage.py reconcile` (docs/operations.md, Backup and restore)")
