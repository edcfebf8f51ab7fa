"""WSGI entry point for gunicorn."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orderhub.settings")

# OpenTelemetry when the OTEL_* variables ask for it (orderhub/tracing.py); before the application
# is built, so the Django instrumentation's middleware is in it.
from orderhub import tracing  # noqa: E402

tracing.configure("api")
application = get_wsgi_application()

# A request never waits on the broker: its outbox rows are published from a thread of the API's
# own, and by the relay sweep when that cannot (sagas/outbox.py).
from sagas import outbox  # noqa: E402

outbox.publish_in_background()
