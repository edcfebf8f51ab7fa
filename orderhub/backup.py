"""Backup and restore (docs/operations.md, Backup and restore): every database (pg_dump, custom format) and the
broker's definitions (exchanges, queues, bindings, policies of our vhost, from RabbitMQ's
management API) into one folder with a manifest; and back onto empty servers.

The databases are dumped one after the other while the system may be running, so the dumps are
not one instant: a saga may be in the orchestrator's dump and not in a domain's, or the reverse.
`manage.py reconcile` lists what differs after a restore and releases what no saga owns."""
import hashlib
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from orderhub import rabbitmq_api

MANIFEST = "manifest.json"
DEFINITIONS = "rabbitmq-definitions.json"


class BackupError(RuntimeError):
    pass


def databases() -> dict:
    """One alias per database: `provider` is a second connection to the payments database."""
    seen, unique = set(), {}
    for alias, db in settings.DATABASES.items():
        if db["NAME"] not in seen:
            seen.add(db["NAME"])
            unique[alias] = db
    return unique


def _pg_env(alias):
    db = settings.DATABASES[alias]
    return os.environ | {"PGHOST": str(db["HOST"]), "PGPORT": str(db["PORT"]), "PGUSER": db["USER"],
                         "PGPASSWORD": db["PASSWORD"] or ""}


def _run(argv, alias):
    done = subprocess.run(argv, env=_pg_env(alias), capture_output=True, text=True)
    if done.returncode:
        raise BackupError(f"{argv[0]} for {alias} failed: {done.stderr.strip()[:1000]}")
    return done.stdout


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def backup(folder: Path) -> dict:
    """Write every database's dump and the broker's definitions into `folder` (new or empty), and
    the manifest last: a folder without a manifest is an unfinished backup."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise BackupError(f"{folder} is not empty")
    manifest = {"format": 1, "started_at": datetime.now(UTC).isoformat(), "databases": {}}
    for alias, db in databases().items():
        target = folder / f"{alias}.dump"
        _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(target), db["NAME"]], alias)
        manifest["databases"][alias] = {"name": db["NAME"], "file": target.name, "bytes": target.stat().st_size,
                                        "sha256": _digest(target), "dumped_at": datetime.now(UTC).isoformat()}
    response = rabbitmq_api.get(f"definitions/{rabbitmq_api.vhost_path()}", timeout=10)
    response.raise_for_status()
    (folder / DEFINITIONS).write_text(json.dumps(response.json(), indent=2, sort_keys=True))
    manifest["rabbitmq"] = {"vhost": rabbitmq_api.vhost(), "file": DEFINITIONS,
                            "sha256": _digest(folder / DEFINITIONS)}
    manifest["finished_at"] = datetime.now(UTC).isoformat()
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _checked_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        raise BackupError(f"{folder} has no {MANIFEST}: not a finished backup")
    manifest = json.loads(path.read_text())
    parts = [*manifest["databases"].values(), manifest["rabbitmq"]]
    for part in parts:
        if _digest(folder / part["file"]) != part["sha256"]:
            raise BackupError(f"{part['file']} does not match its checksum in the manifest")
    missing = set(databases()) - set(manifest["databases"])
    if missing:
        raise BackupError(f"the backup has no dump of {sorted(missing)}")
    return manifest


def _tables_in(alias) -> int:
    out = _run(["psql", "-tAc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                settings.DATABASES[alias]["NAME"]], alias)
    return int(out.strip() or 0)


def _ensure_database(alias):
    name = settings.DATABASES[alias]["NAME"]
    exists = _run(["psql", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'", "postgres"], alias)
    if not exists.strip():
        _run(["createdb", name], alias)


def _ensure_vhost():
    """An empty broker has no vhost of ours: create it, and let our user use it."""
    from kombu import Connection

    if rabbitmq_api.get(f"vhosts/{rabbitmq_api.vhost_path()}").status_code == 200:
        return
    user = Connection(settings.BROKER_URL).userid
    for path, body in ((f"vhosts/{rabbitmq_api.vhost_path()}", {}),
                       (f"permissions/{rabbitmq_api.vhost_path()}/{user}", {"configure": ".*", "write": ".*",
                                                                             "read": ".*"})):
        response = rabbitmq_api.request("PUT", path, json=body, timeout=10)
        if response.status_code >= 300:
            raise BackupError(f"RabbitMQ refused PUT {path}: {response.status_code} {response.text[:300]}")


def restore(folder: Path) -> dict:
    """Restore every database and the broker's definitions from `folder`, onto empty databases
    (created when missing). Refuses a database that already has tables: restore onto empty
    servers, never over live data."""
    manifest = _checked_manifest(folder)
    for alias in databases():
        _ensure_database(alias)
        if _tables_in(alias):
            raise BackupError(f"database {settings.DATABASES[alias]['NAME']} ({alias}) is not empty: restore "
                              "onto empty databases (drop and create them first)")
    for alias, part in manifest["databases"].items():
        _run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname", settings.DATABASES[alias]["NAME"],
              str(folder / part["file"])], alias)
    definitions = json.loads((folder / manifest["rabbitmq"]["file"]).read_text())
    _ensure_vhost()
    response = rabbitmq_api.request("POST", f"definitions/{rabbitmq_api.vhost_path()}", json=definitions, timeout=30)
    if response.status_code >= 300:
        raise BackupError(f"RabbitMQ refused the definitions: {response.status_code} {response.text[:500]}")
    return manifest
