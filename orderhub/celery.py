"""The one Celery app. Every process (orchestrator, domain workers, beat, api) uses it."""
import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderhub.settings")

app = Celery("orderhub")
# Read lazily, on first use, so importing this module never needs Django to be set up.
app.config_from_object("orderhub.celeryconfig")
import orderhub.logs  # noqa: E402,F401  (binds saga and message ids to every log line)
app.autodiscover_tasks(
    ["sagas", "workers.inventory", "workers.payments", "workers.shipping", "workers.notifications"]
)


@signals.task_prerun.connect
def drop_stale_database_connections(**kwargs):
    """Workers keep their database connections from task to task (CELERY_DB_REUSE_MAX in
    celeryconfig), as gunicorn does from request to request: before each task, Django closes any
    connection that is broken or older than CONN_MAX_AGE, and health-checks the others on first use
    (CONN_HEALTH_CHECKS), so a restarted PostgreSQL costs one reconnect, not a failed task."""
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_init.connect
def declare_topology_before_consuming(sender=None, **kwargs):
    from orderhub import topology

    topology.ensure_declared(app)
