"""Structured logs: every line carries the saga id and message id of the work in hand.

Celery's task_prerun binds them from the message envelope into structlog's context variables;
the stdlib formatter below merges those into every record, Django's and Celery's included.
"""
import structlog
from celery import signals
from structlog.contextvars import bind_contextvars, clear_contextvars


def formatter(renderer: str):
    return structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.JSONRenderer() if renderer == "json" else structlog.processors.KeyValueRenderer(
            key_order=["timestamp", "level", "logger", "event", "saga_id", "message_id", "task"], drop_missing=True
        ),
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )


@signals.task_prerun.connect
def bind_message_ids(task_id=None, task=None, args=None, **kwargs):
    clear_contextvars()
    body = args[0] if args and isinstance(args[0], dict) else {}
    bind_contextvars(task=task.name if task else None, message_id=body.get("message_id") or task_id,
                     saga_id=body.get("saga_id"))


@signals.task_postrun.connect
def unbind_message_ids(**kwargs):
    clear_contextvars()
