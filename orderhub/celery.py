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


@signals.worker_init.connect
def declare_topology_before_consuming(sender=None, **kwargs):
    from orderhub import topology

    topology.ensure_declared(app)
