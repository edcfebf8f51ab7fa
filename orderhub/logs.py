"""Structured logs: every line carries the saga id and message id of the work in hand.

Celery's task_prerun binds them from the message envelope into structlog's context variables;
the stdlib formatter below merges those into every record, Django's and Celery's included.
"""
from collections.abc import Mapping

import structlog
from celery import signals
from structlog.contextvars import bind_contextvars, clear_contextvars


# What every line gets, whether it comes from structlog (our own modules: `structlog.get_logger`,
# fields as keyword arguments) or from the standard library (Django, Celery, gunicorn).
SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]

structlog.configure(
    processors=[structlog.stdlib.filter_by_level, *SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)

KEY_ORDER = ["timestamp", "level", "logger", "event", "request_id", "correlation_id", "saga_id", "message_id", "task"]


def formatter(renderer: str):
    """One line per event; an exception's traceback follows its line as text (key=value), or as
    structured frames under `exception` (JSON)."""
    if renderer == "json":
        render = [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        render = [structlog.processors.format_exc_info, KeyValueWithTraceback()]
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        pass_foreign_args=True,  # for access_fields
        foreign_pre_chain=[access_fields, *SHARED],
    )


# gunicorn hands its access log the request's "atoms" as the record's arguments: kept as fields.
ACCESS_FIELDS = {"m": "method", "U": "path", "q": "query", "s": "status", "M": "duration_ms", "B": "bytes",
                 "h": "remote"}


def access_fields(logger, name, event_dict):
    args = event_dict.pop("positional_args", None)  # passed for this processor only
    record = event_dict.get("_record")
    if record is not None and record.name == "gunicorn.access" and isinstance(args, Mapping):
        event_dict["event"] = "request"
        event_dict.update({field: args[atom] for atom, field in ACCESS_FIELDS.items()
                           if args.get(atom) not in (None, "", "-")})
        if args.get("{x-request-id}o") not in (None, "", "-"):  # the response's header (orderhub/request_id.py)
            event_dict["request_id"] = args["{x-request-id}o"]
    return event_dict


class KeyValueWithTraceback:
    """key=value for the fields, then the traceback as the lines Python prints, so a bug reads the
    way it would in a terminal (and `grep -A` finds it under its saga and message ids)."""

    def __init__(self):
        self._fields = structlog.processors.KeyValueRenderer(key_order=KEY_ORDER, drop_missing=True)

    def __call__(self, logger, name, event_dict):
        traceback = event_dict.pop("exception", None)
        line = self._fields(logger, name, event_dict)
        return f"{line}\n{traceback.rstrip()}" if traceback else line


@signals.task_prerun.connect
def bind_message_ids(task_id=None, task=None, args=None, **kwargs):
    clear_contextvars()
    body = args[0] if args and isinstance(args[0], dict) else {}
    payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
    bind_contextvars(task=task.name if task else None, message_id=body.get("message_id") or task_id,
                     saga_id=body.get("saga_id"))
    # The order's id and the id of the request that placed it, on every line of a command's work.
    for name, value in (("correlation_id", body.get("correlation_id")), ("request_id", payload.get("request_id"))):
        if isinstance(value, str) and value:
            bind_contextvars(**{name: value[:100]})


@signals.task_postrun.connect
def unbind_message_ids(**kwargs):
    clear_contextvars()
