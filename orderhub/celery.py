"""The one Celery app. Every process (orchestrator, domain workers, beat, api) uses it."""
import os
import time

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderhub.settings")

# Remote control whose mailbox queues survive a broker node's loss (orderhub/control.py).
app = Celery("orderhub", control="orderhub.control:Control")
# Read lazily, on first use, so importing this module never needs Django to be set up.
app.config_from_object("orderhub.celeryconfig")
import orderhub.logs  # noqa: E402,F401  (binds saga and message ids to every log line)
# The orchestrator applies replies, and each domain worker handles commands, in batches, on a
# consumer of its own (orderhub/batches.py).
app.steps["worker"].add("orderhub.batches:Batches")
from orderhub import topology  # noqa: E402

# queue -> (its batch consumer, the setting of its batch size; 0 leaves the queue to Celery's own).
BATCH_CONSUMERS = {topology.REPLIES_QUEUE: ("sagas.consumer:ReplyConsumer", "REPLY_BATCH")} | {
    f"{domain}.commands": ("workers.batches:CommandConsumer", "COMMAND_BATCH") for domain in topology.DOMAINS
}
app.autodiscover_tasks(
    ["sagas", "workers.inventory", "workers.payments", "workers.shipping", "workers.notifications"]
)


# A connection that a task finished using cleanly this recently is not health-checked again
# before the next task: under load that `SELECT 1` was a round trip before every message.
HEALTH_CHECK_GRACE_SECONDS = 1.0
_used_cleanly_at: dict[str, float] = {}


@signals.task_prerun.connect
def drop_stale_database_connections(**kwargs):
    """Workers keep their database connections from task to task (CELERY_DB_REUSE_MAX in
    celeryconfig), as gunicorn does from request to request: before each task, Django closes any
    connection that is broken or older than CONN_MAX_AGE, and health-checks the others on first use
    (CONN_HEALTH_CHECKS), so a restarted PostgreSQL costs one reconnect, not a failed task. The
    check is skipped for a connection the previous task left, without an error, less than
    HEALTH_CHECK_GRACE_SECONDS ago: if PostgreSQL went in that second, the task's first statement
    fails as a lost connection (retried, as every task's are), and Django closes the connection
    before the next task (errors_occurred)."""
    from django.db import close_old_connections, connections

    close_old_connections()
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if (connection.connection is not None and connection.health_check_enabled
                and now - _used_cleanly_at.get(connection.alias, float("-inf")) < HEALTH_CHECK_GRACE_SECONDS):
            connection.health_check_done = True


@signals.task_postrun.connect
def note_connections_left_clean(**kwargs):
    from django.db import connections

    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.errors_occurred and not connection.in_atomic_block:
            _used_cleanly_at[connection.alias] = now
        else:
            _used_cleanly_at.pop(connection.alias, None)


@signals.worker_init.connect
def trace_if_asked(sender=None, **kwargs):
    """OpenTelemetry, when the OTEL_* variables ask for it (orderhub/tracing.py); -P solo, so
    the worker's one process is the one that runs the tasks."""
    from orderhub import tracing

    tracing.configure(getattr(sender, "hostname", None) or "worker")


@signals.worker_init.connect
def refuse_to_drop_a_definition_in_use(sender=None, **kwargs):
    """An orchestrator does not start without every saga definition version that live sagas are
    pinned to (docs/upgrading.md): it says which, and how many sagas."""
    queues = set(getattr(getattr(sender, "app", app).amqp.queues, "consume_from", None) or {})
    if "saga.replies" not in queues:
        return
    from sagas import definitions, engine  # noqa: F401  (loads every definition)

    try:
        missing = engine.unloaded_versions_in_use()
    except Exception as exc:  # the database is down: the engine's own retries take over from here
        import logging

        logging.getLogger(__name__).warning("could not check the saga definition versions in use: %r", exc)
        return
    if missing:
        raise SystemExit("refusing to start the orchestrator: " + "; ".join(missing))


@signals.worker_init.connect
def declare_topology_before_consuming(sender=None, **kwargs):
    from orderhub import topology

    topology.ensure_declared(app)


@signals.worker_init.connect
def publish_outbox_rows_from_a_thread(sender=None, **kwargs):
    """The orchestrator applies a reply, commits, and goes on to the next one: the commands it
    wrote are published from a thread of its own, in batches, one `published_at` update per batch
    (sagas/outbox.py). A row still held when the process dies is published by the relay sweep, as
    after any crash between commit and publish. Domain workers write no outbox rows."""
    from sagas import outbox

    outbox.publish_in_background()


@signals.worker_shutdown.connect
def publish_what_is_held_before_stopping(sender=None, **kwargs):
    from sagas import outbox

    if not outbox.flush_background(timeout=5.0):
        import logging

        logging.getLogger(__name__).warning("outbox rows still unpublished at shutdown; the relay will publish them")


@signals.beat_init.connect
@signals.worker_init.connect
def serve_process_metrics(sender=None, **kwargs):
    from orderhub import process_metrics

    try:
        process_metrics.serve_if_asked()
    except OSError as exc:  # the port is taken: the worker works on, without its endpoint
        import logging

        logging.getLogger(__name__).warning("metrics endpoint not started: %r", exc)
