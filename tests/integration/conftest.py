"""Real processes for integration tests: the orchestrator, four domain workers and beat, started as
subprocesses against pytest-django's test databases, the real RabbitMQ (its own vhost) and Redis."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from orderhub import topology
from orderhub.celery import app
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "var" / "test-logs"

CELERY = [sys.executable, "-m", "celery", "-A", "orderhub"]
PROCESSES = {
    "orchestrator": ["worker", "-Q", "saga.replies,saga.control", "-P", "solo"],
    "inventory": ["worker", "-Q", "inventory.commands", "-P", "solo"],
    "payments": ["worker", "-Q", "payments.commands", "-P", "solo"],
    "shipping": ["worker", "-Q", "shipping.commands", "-P", "solo"],
    "notifications": ["worker", "-Q", "notifications.commands", "-P", "solo"],
}


class Cluster:
    """The running processes; tests may kill and restart them."""

    def __init__(self, env):
        self.env = env
        self.procs = {}
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def start(self, name, *, index=1):
        key = f"{name}-{index}"
        if name == "beat":
            command = CELERY + ["beat", "-s", str(LOG_DIR / "celerybeat-schedule"), "--pidfile=", "-l", "INFO"]
        elif name == "deadletters":
            command = [sys.executable, "manage.py", "deadletters", "consume"]
        else:
            command = CELERY + PROCESSES[name] + ["-n", f"{key}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"]
        log = open(LOG_DIR / f"{key}.log", "ab")
        self.procs[key] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return key

    def wait_ready(self, keys, timeout=60):
        names = {f"{key}@{os.uname().nodename}" for key in keys if key.rsplit("-", 1)[0] in PROCESSES}

        def all_answer():
            replies = app.control.ping(timeout=0.5) or []
            return names <= {name for reply in replies for name in reply}

        eventually(all_answer, timeout=timeout, interval=0.2, message=f"workers {sorted(names)} to answer a ping")

    def kill(self, key, sig=signal.SIGKILL):
        proc = self.procs.pop(key)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def restart(self, key):
        name, index = key.rsplit("-", 1)
        self.kill(key)
        new_key = self.start(name, index=int(index))
        self.wait_ready([new_key])
        return new_key

    def stop_all(self):
        for key in list(self.procs):
            proc = self.procs.pop(key)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)


def purge_all_queues():
    with app.connection_for_write() as connection:
        topology.declare(connection)
        channel = connection.channel()
        for name in topology.QUEUE_BINDINGS:
            channel.queue_purge(name)
            channel.queue_purge(topology.dlq_name(name))
        channel.close()


@pytest.fixture(scope="session")
def cluster(django_db_setup, django_db_blocker):
    purge_all_queues()
    env = os.environ | {
        "ORDERHUB_DB_PREFIX": "test_",
        "ORDERHUB_BROKER_URL": settings.BROKER_URL,
        "ORDERHUB_REDIS_URL": settings.REDIS_URL,
        "ORDERHUB_OUTBOX_RELAY_INTERVAL": "0.5",
        "ORDERHUB_OUTBOX_RELAY_GRACE": "0.5",
        "ORDERHUB_DEADLINE_SWEEP_INTERVAL": "0.5",
        "ORDERHUB_SANDBOX_SLOW_SECONDS": "12",
        "PYTHONUNBUFFERED": "1",
    }
    running = Cluster(env)
    keys = [running.start(name) for name in PROCESSES]
    running.start("beat")
    running.start("deadletters")
    try:
        running.wait_ready(keys)
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def live(cluster, transactional_db, django_db_blocker):
    """An integration test: committed data the subprocesses can see, flushed afterwards."""
    yield cluster
