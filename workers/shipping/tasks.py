"""Celery tasks of the shipping worker: one per command type, named after it (see workers/messaging.py)."""
from workers.messaging import register_tasks
from workers.shipping import handlers  # noqa: F401  (registers the handlers)

TASKS = register_tasks("shipping")
