"""Backup and restore (orderhub/backup.py) with the real PostgreSQL and RabbitMQ: a backup taken
with orders in the databases comes back onto empty databases and an empty vhost, order and topology
included; a restore refuses databases that are not empty, and a backup whose files do not match
their manifest."""
import json
import subprocess
import uuid

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from orderhub import backup, rabbitmq_api
from tests.integration.helpers import api_client, place, product, wait_ended

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


def psql(sql, database="postgres"):
    env = backup._pg_env("default")
    return subprocess.run(["psql", "-tAc", sql, database], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def elsewhere(settings):
    """Empty databases and an empty vhost of their own, named after the live ones; dropped after."""
    suffix = uuid.uuid4().hex[:6]
    live = {alias: dict(db) for alias, db in settings.DATABASES.items()}
    scratch = {alias: db | {"NAME": f"restore_{suffix}_{'payments' if alias == 'provider' else alias}"}
               for alias, db in live.items()}  # provider: a second connection to payments, as live
    vhost = f"restore_{suffix}"
    base, _, _ = settings.BROKER_URL.rpartition("/")
    yield scratch, f"{base}/{vhost}"
    for name in {db["NAME"] for db in scratch.values()}:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    requests.delete(f"{rabbitmq_api.urls()[0]}/vhosts/{vhost}", timeout=10)


def test_a_backup_comes_back_onto_empty_servers(live, tmp_path, elsewhere, settings):
    sku = product(stock=10)
    order_id = place(api_client(), sku=sku)["id"]
    assert wait_ended(order_id, timeout=20).status == "completed"

    call_command("backup", str(tmp_path / "b"))
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert set(manifest["databases"]) == set(settings.DATABASES) - {"provider"}  # the payments database once

    scratch, broker_url = elsewhere
    settings.DATABASES, settings.BROKER_URL = scratch, broker_url  # what restore (a subprocess's tools) reads
    call_command("restore", str(tmp_path / "b"))

    orders = psql("SELECT status FROM orders_order", scratch["default"]["NAME"])
    assert orders == "completed"
    assert psql("SELECT available FROM inventory_stock", scratch["inventory"]["NAME"]) == "9"
    queues = {q["name"] for q in rabbitmq_api.get(f"queues/{rabbitmq_api.vhost_path()}", timeout=10).json()}
    assert {"payments.commands", "saga.replies", "payments.commands.dlq", "webhooks.events"} <= queues

    with pytest.raises(CommandError, match="is not empty: restore onto empty databases"):
        call_command("restore", str(tmp_path / "b"))


def test_a_backup_that_does_not_match_its_manifest_is_refused(live, tmp_path):
    call_command("backup", str(tmp_path / "b"))
    with (tmp_path / "b" / "payments.dump").open("ab") as dump:
        dump.write(b"tampered")
    with pytest.raises(CommandError, match="payments.dump does not match its checksum"):
        call_command("restore", str(tmp_path / "b"))
    with pytest.raises(CommandError, match="not empty"):
        call_command("backup", str(tmp_path / "b"))
