"""OrderHub: the Django project (settings, the one Celery app, topology, the orders app and the API)."""
from .celery import app as celery_app

__all__ = ("celery_app",)
