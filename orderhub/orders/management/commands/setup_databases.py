"""Create every service database that does not exist yet, then migrate each one."""
import psycopg2
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from psycopg2 import sql


class Command(BaseCommand):
    help = "Create the service databases (if missing) and apply migrations to each."

    def handle(self, *args, **options):
        default = settings.DATABASES["default"]
        connection = psycopg2.connect(
            dbname="postgres", user=default["USER"], password=default["PASSWORD"],
            host=default["HOST"], port=default["PORT"],
        )
        connection.autocommit = True
        names = {db["NAME"] for db in settings.DATABASES.values()}
        with connection.cursor() as cursor:
            for name in sorted(names):
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    self.stdout.write(f"created database {name}")
        connection.close()
        for alias in settings.DATABASES:
            if alias == "provider":
                continue  # the same database as payments
            call_command("migrate", database=alias, interactive=False, verbosity=0)
            self.stdout.write(f"migrated {alias}")
