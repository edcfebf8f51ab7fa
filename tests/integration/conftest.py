"""Real processes for integration tests: the orchestrator, four domain workers, beat and the
dead-letter archiver, started as subprocesses against pytest-django's test databases, the real
RabbitMQ (its own vhost) and Redis."""
import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management.base import CommandError
from django.test.testcases import TransactionTestCase

from orderhub import topology
from orderhub.celery import app
from tests.conftest import eventually
from tests.support.cluster import ROOT, WORKERS, Cluster

LOG_DIR = ROOT / "var" / "test-logs"
PROCESSES = WORKERS  # the Celery workers, each started once as <name>-1


def _flush_retrying_on_deadlock(original):
    """The live processes may still be finishing as a test's data is flushed (an event applied by
    the projections process, a relay sweep): TRUNCATE and their transactions can deadlock, and
    PostgreSQL aborts one of them. When it aborts the flush, flush again."""

    def teardown(self):
        for attempt in range(5):
            try:
                return original(self)
            except CommandError as exc:
                if attempt == 4 or "deadlock detected" not in str(exc.__cause__ or ""):
                    raise
                time.sleep(0.5)

    return teardown


TransactionTestCase._fixture_teardown = _flush_retrying_on_deadlock(TransactionTestCase._fixture_teardown)


class TestCluster(Cluster):
    def wait_ready(self, keys, timeout=60):
        eventually(lambda: self.answering(app, keys), timeout=timeout, interval=0.2,
                   message=f"workers {sorted(self.worker_names(keys))} to answer a ping")

    def restart(self, key):
        new_key = super().restart(key)
        self.wait_ready([new_key])
        return new_key


# Every queue a process of the suite consumes: the workers', the subscribers', the dead-letter queues.
CONSUMED = {*topology.QUEUE_BINDINGS, *topology.EVENT_SUBSCRIBERS,
            *(topology.dlq_name(name) for name in topology.DEAD_LETTERED)}


def consumed_queues() -> set[str]:
    """The queues of CONSUMED that have a consumer now (a passive declare: exact, where the
    management API's counts lag by seconds)."""
    with app.connection_for_write() as connection:
        channel = connection.channel()
        try:
            return {name for name in CONSUMED if channel.queue_declare(queue=name, passive=True).consumer_count}
        finally:
            channel.close()


def purge_all_queues():
    with app.connection_for_write() as connection:
        topology.declare(connection)
        channel = connection.channel()
        for name in [*topology.QUEUE_BINDINGS, *topology.EVENT_SUBSCRIBERS]:
            channel.queue_purge(name)
        for name in topology.DEAD_LETTERED:
            channel.queue_purge(topology.dlq_name(name))
        channel.queue_purge(topology.PARKING_QUEUE)
        channel.close()


@pytest.fixture(scope="session")
def cluster(django_db_setup, django_db_blocker):
    """The processes, started once for the session. pytest-django runs the tests in its own order
    (by database use), so unit tests run while these processes are up: a unit test that talks to
    the broker uses queues of its own (tests/unit/test_subscriber.py)."""
    purge_all_queues()
    env = os.environ | {
        "ORDERHUB_DB_PREFIX": "test_" + settings.DB_PREFIX,
        "ORDERHUB_BROKER_URL": settings.BROKER_URL,
        "ORDERHUB_REDIS_URL": settings.REDIS_URL,
        "ORDERHUB_OUTBOX_RELAY_INTERVAL": "0.5",
        "ORDERHUB_OUTBOX_RELAY_GRACE": "0.5",
        "ORDERHUB_DEADLINE_SWEEP_INTERVAL": "0.5",
        "ORDERHUB_SANDBOX_SLOW_SECONDS": "18",
        # A lost database is retried 3 times, a second apart, before the outcome is unknown.
        "ORDERHUB_INFRASTRUCTURE_RETRY_ATTEMPTS": "3",
        "ORDERHUB_INFRASTRUCTURE_RETRY_MAX_DELAY": "1",
        # A webhook delivery is tried 10 times, 0.3 s after the first failure and at most 2 s apart (14 s).
        "ORDERHUB_WEBHOOK_MAX_ATTEMPTS": "10",
        "ORDERHUB_WEBHOOK_BACKOFF_SECONDS": "0.3",
        "ORDERHUB_WEBHOOK_BACKOFF_MAX_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    running = TestCluster(env, Path(LOG_DIR))
    keys = [running.start(name) for name in WORKERS]
    running.start("beat")
    running.start("deadletters")
    running.start("projections")
    running.start("webhooks")
    try:
        running.wait_ready(keys)
        # The archiver, projections and webhooks answer no ping: ready is consuming every queue.
        # (The first test once saw its dead letters archived 31 s late, the archiver still starting.)
        eventually(lambda: consumed_queues() == CONSUMED, timeout=60, interval=0.2,
                   message="every queue to have its consumer")
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def live(cluster, transactional_db, django_db_blocker):
    """An integration test: committed data the subprocesses can see, flushed afterwards."""
    yield cluster


@pytest.fixture
def api_process(live):
    """Start API processes of their own (gunicorn) with extra environment; stopped afterwards."""
    from tests.integration.api_process import Api

    apis = []

    def start(**env):
        apis.append(Api(live, LOG_DIR, **env))
        return apis[-1]

    yield start
    for api in apis:
        api.stop()
