"""Celery's consumer, changed where it would lose a message or its reason.

- An undecodable message: Celery acks it (deleting it without trace); here it is rejected to the
  queue's dead-letter exchange instead.
- A message that is not a task, or names an unknown task: Celery rejects it; here the reason is
  noted first so the dead-letter archive can say why.
- A task message whose body is not Celery's `[args, kwargs, embed]`, or whose headers Celery
  cannot use (no `id`, a `timelimit` that is not a pair of numbers, ...): Celery unpacks it in
  its consume strategy, outside any task, and an error there is "unrecoverable": the worker
  process exits, and the message, never acked, comes back to kill the next one. Some shapes get
  past the strategy and are acked away later instead (keyword arguments that are not an object).
  Here every task message is checked before the strategy sees it, and anything the strategy
  still raises is caught: either way the message is poison, rejected to its dead-letter queue
  with the reason, and the worker carries on. (A malformed tick is dropped and counted instead:
  its queue has no dead-letter queue, a tick being worthless once late.)
- After losing the broker, Celery retries the connection at 2, 4, 6, ... seconds (kombu's
  defaults), so a worker comes back up to ten seconds after a restarted RabbitMQ does, while
  deadlines run. Here it retries every half second, then at most every two seconds.
"""
import functools
import inspect
import numbers
from datetime import datetime, timedelta, timezone

import structlog
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery as CeleryDelayedDelivery
from kombu import Connection
from kombu.exceptions import ContentDisallowed, DecodeError, InconsistencyError
from vine import promise

from orderhub import counters, topology
from orderhub.deadletters.reasons import message_key, note_reason

log = structlog.get_logger(__name__)

MALFORMED_TICKS_KEY = "ticks:malformed"


def _note(message, reason):
    note_reason(message_key(headers=message.headers, properties=message.properties, body=message.body), reason)


RECONNECT = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


# Retries are delayed by at most a minute; an eta much further ahead would sit in a worker's memory.
MAX_ETA_AHEAD = timedelta(hours=1)


def _datetime(value):
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _is_number_or_none(value):
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def task_message_problem(app, message) -> str | None:
    """Why a protocol-2 task message cannot be run as it is, or None. Checks only what Celery
    would trust without checking (it would crash the worker or ack the message away)."""
    headers = message.headers
    if not isinstance(headers.get("id"), str) or not headers["id"]:
        return "the task id header is missing or not a string"
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (isinstance(timelimit, (list, tuple)) and len(timelimit) == 2
                                      and all(_is_number_or_none(t) for t in timelimit)):
        return f"the timelimit header is not a pair of numbers: {timelimit!r:.100}"
    retries = headers.get("retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0):
        return f"the retries header is not a count: {retries!r:.100}"
    if headers.get("expires") is not None:
        # OrderHub never sets one; Celery would ack an expired message away without a trace.
        return "an expires header (OrderHub sends none)"
    eta = headers.get("eta")
    if eta is not None:
        when = _datetime(eta)
        if when is None:
            return f"the eta header is not a date and time: {eta!r:.100}"
        if when > datetime.now(timezone.utc) + MAX_ETA_AHEAD:
            return f"the eta header is more than {MAX_ETA_AHEAD} ahead: {eta:.100}"
    for name in ("root_id", "parent_id", "group", "shadow", "lang", "origin", "argsrepr", "kwargsrepr"):
        if headers.get(name) is not None and not isinstance(headers[name], str):
            return f"the {name} header is not a string"
    body = message.decode()  # a DecodeError here goes to on_decode_error, like Celery's own
    if not isinstance(body, (list, tuple)) or len(body) != 3:
        return "the body is not [args, kwargs, embed]"
    args, kwargs, embed = body
    if not isinstance(args, (list, tuple)):
        return "args is not a list"
    if not isinstance(kwargs, dict):
        return "kwargs is not an object"
    if embed is not None and not isinstance(embed, dict):
        return "embed is not an object"
    for name in ("callbacks", "errbacks", "chain"):
        if (embed or {}).get(name) is not None:
            return f"embed.{name} is not accepted (OrderHub sends no workflows)"
    if (embed or {}).get("chord") is not None:
        return "embed.chord is not accepted (OrderHub sends no workflows)"
    task = app.tasks.get(headers.get("task"))
    if task is not None:
        try:
            inspect.signature(task.run).bind(*args, **kwargs)
        except TypeError as exc:
            return f"the arguments do not fit {task.name}: {exc}"
    return None


def malformed_ticks() -> int:
    return counters.read(MALFORMED_TICKS_KEY)


class DelayedDelivery(CeleryDelayedDelivery):
    """Celery's native delayed delivery (the retries RabbitMQ holds), set up on the first node of
    ORDERHUB_BROKER_URL that answers. Celery's own step takes every URL in the list for a broker of
    its own and retries each one that is down for seconds before the worker consumes anything;
    the nodes of one cluster share their exchanges and queues, so one node is enough."""

    def start(self, c):
        self._validate_configuration(c.app)
        self._validate_broker_urls(c.app.conf.broker_url)  # (a set: it loses the list's order)
        configured = c.app.conf.broker_url
        urls = [u.strip() for u in (configured.split(";") if isinstance(configured, str) else configured) if u.strip()]
        # The node the consumer has just connected to first: it answers.
        connection = getattr(c, "connection", None)
        if connection is not None:
            current = connection.as_uri(include_password=True)
            urls = sorted(urls, key=lambda url: Connection(url).as_uri(include_password=True) != current)
        errors = []
        for url in urls:
            try:
                self._setup_delayed_delivery(c, url)
                return
            except Exception as exc:  # the next node, then the warning below
                errors.append(exc)
        log.warning("native delayed delivery could not be set up on any node of the broker URL",
                    errors=[repr(e) for e in errors][:3])


class Consumer(CeleryConsumer):
    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [step if not step.endswith(":DelayedDelivery") else "orderhub.celery_consumer:DelayedDelivery"
                         for step in CeleryConsumer.Blueprint.default_steps]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # broker_channel_error_retry (celeryconfig) restarts the consumer on these as on a lost
        # connection. kombu turns a mailbox queue the broker refuses to re-declare (405) into an
        # InconsistencyError; orderhub/control.py names the queues so that it does not happen,
        # and should it happen anyway it is one more restart, not the end of the worker.
        self.channel_errors = (*self.channel_errors, InconsistencyError)

    def cancel_task_queue(self, queue):
        """`cancel_consumer <queue>` pauses the queue's batch consumer, if it has one (orderhub/batches.py)."""
        batches = getattr(self.controller, "batch_consumers", None) or {}
        if queue in batches:
            batches[queue].pause()
            return
        super().cancel_task_queue(queue)

    def add_task_queue(self, queue, *args, **kwargs):
        batches = getattr(self.controller, "batch_consumers", None) or {}
        if queue in batches:
            batches[queue].resume()
            return
        super().add_task_queue(queue, *args, **kwargs)

    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT)
        return super().ensure_connected(conn)

    def on_decode_error(self, message, exc):
        self.poison(message, f"cannot decode the body ({message.content_type}): {exc}")

    def on_unknown_message(self, body, message):
        self.poison(message, "not a task message (no task header)")

    def on_unknown_task(self, body, message, exc):
        self.poison(message, f"unknown task {message.headers.get('task')!r:.200}")

    def on_invalid_task(self, body, message, exc):
        self.poison(message, f"invalid task message: {exc}")

    def poison(self, message, why):
        """Reject a message nobody can run to its dead-letter queue with the reason noted (a tick:
        dropped, as its queue drops them, and counted)."""
        if message.acknowledged:
            return
        routing_key = str((message.delivery_info or {}).get("routing_key") or "")
        if routing_key.startswith(topology.TICK_PREFIX):
            log.error("malformed tick dropped", why=why)
            counters.count(MALFORMED_TICKS_KEY)
        else:
            log.error("malformed message dead-lettered", why=why)
            _note(message, f"malformed: {why}")
        message.reject(requeue=False)

    def create_task_handler(self, promise=promise):
        handler = super().create_task_handler(promise)
        app = self.app

        def on_task_received(message):
            try:
                headers = message.headers
                if isinstance(headers, dict) and "task" in headers:  # protocol 2, Celery's own
                    try:
                        problem = task_message_problem(app, message)
                    except (DecodeError, ContentDisallowed) as exc:
                        return self.on_decode_error(message, exc)
                    if problem:
                        return self.poison(message, problem)
                return handler(message)
            except (*self.connection_errors, *self.channel_errors):
                raise  # the broker is gone: Celery reconnects, and the message comes back
            except Exception as exc:
                # Celery would call this unrecoverable and stop the worker (see the module's doc).
                log.exception("a message broke the consume strategy")
                return self.poison(message, f"{type(exc).__name__}: {exc}"[:1000])

        return on_task_received
