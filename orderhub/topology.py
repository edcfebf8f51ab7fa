"""The RabbitMQ topology, declared in one place, idempotently (DESIGN §3).

One topic exchange carries every command, reply and control message; the routing key is the
message type ("inventory.reserve", "saga.reply"), which is also the Celery task name. Each
domain has one durable quorum queue; each queue dead-letters into `<queue>.dlq` through one
direct dead-letter exchange.

Why topic and not direct: Celery's native delayed delivery (used for retries held by RabbitMQ)
only works through topic exchanges on quorum queues.
"""
import threading

import amqp.exceptions
import structlog
from kombu import Connection, Exchange, Queue

log = structlog.get_logger(__name__)

EXCHANGE = Exchange("orderhub", type="topic", durable=True)
# Domain events for any subscriber (orderhub/events.py): a subscriber binds its own queue.
EVENTS_EXCHANGE = Exchange("orderhub.events", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("orderhub.dlx", type="direct", durable=True)

DOMAINS = ("inventory", "payments", "shipping", "notifications")
REPLIES_QUEUE = "saga.replies"
CONTROL_QUEUE = "saga.control"
# Beat's periodic ticks (outbox relay, deadline sweep). A tick is worthless once the next one is
# due, so the queue drops ticks older than TICK_TTL_MS and does not dead-letter them.
TICKS_QUEUE = "saga.ticks"
TICK_PREFIX = "saga.tick"  # the ticks' routing keys (saga.tick.<name>) and their queue's name
TICK_TTL_MS = 30_000
REPLY_TYPE = "saga.reply"
# The deadline sweep's marker: beat's tick queues it into saga.replies (routing key REPLY_TYPE),
# behind every reply already waiting there (sagas/tasks.py).
DEADLINES_DUE_TYPE = "saga.deadlines_due"
# Dead letters the archive cannot store (the archiver moves them here, as they are, and counts
# them): an operator reads them with RabbitMQ's tools. Nobody consumes it.
PARKING_QUEUE = "deadletters.parked"

# A message redelivered this many times (its consumer crashed on it each time) is poison:
# RabbitMQ dead-letters it instead of handing it out again.
DELIVERY_LIMIT = 10

# name -> binding key on EXCHANGE
QUEUE_BINDINGS = {f"{domain}.commands": f"{domain}.*" for domain in DOMAINS} | {
    REPLIES_QUEUE: REPLY_TYPE,
    CONTROL_QUEUE: "saga.control.#",
    TICKS_QUEUE: "saga.tick.#",
}
# Subscribers of the domain events (orderhub/events.py) that ship with OrderHub: their queue on
# EVENTS_EXCHANGE -> the event types it is bound to. Each is a quorum queue with a dead-letter queue.
EVENT_SUBSCRIBERS = {
    "projections.sales": ("order.completed", "order.failed", "order.cancelled", "order.needs_attention",
                          "order.resolved"),
    "webhooks.events": ("order.completed", "order.failed", "order.cancelled", "order.needs_attention",
                        "order.resolved"),
}
# Queues whose messages go to a dead-letter queue when rejected; every queue but the ticks.
DEAD_LETTERED = [name for name in QUEUE_BINDINGS if name != TICKS_QUEUE] + list(EVENT_SUBSCRIBERS)


def command_queue(message_type: str) -> str | None:
    """The queue a command of this type is routed to (None for anything but a domain's command)."""
    name = f"{message_type.split('.', 1)[0]}.commands"
    return name if name in QUEUE_BINDINGS else None


def queue_arguments(name):
    if name == TICKS_QUEUE:
        return {"x-queue-type": "quorum", "x-message-ttl": TICK_TTL_MS}
    # Quorum queues: replicated, delivery-limit catches poison, and at-least-once dead-lettering
    # (which needs overflow=reject-publish) so nothing is lost on the way to the DLQ.
    # https://www.rabbitmq.com/docs/quorum-queues#dead-lettering
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
        "x-dead-letter-routing-key": name,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": DELIVERY_LIMIT,
    }


def subscriber_queue(name, *, no_declare=False):
    """An event subscriber's queue, bound to each of its event types (kombu bindings)."""
    from kombu import binding

    return Queue(name, bindings=[binding(EVENTS_EXCHANGE, routing_key=key) for key in EVENT_SUBSCRIBERS[name]],
                 durable=True, queue_arguments=queue_arguments(name), no_declare=no_declare)


def dlq_name(queue_name):
    return f"{queue_name}.dlq"


def _work_queue(name, *, no_declare):
    return Queue(
        name,
        EXCHANGE,
        routing_key=QUEUE_BINDINGS[name],
        durable=True,
        queue_arguments=queue_arguments(name),
        no_declare=no_declare,
    )


def celery_queues():
    """The queues Celery consumes from. Declared by `declare()`, never by Celery itself, so that a
    queue whose arguments changed does not stop a worker from starting."""
    return [_work_queue(name, no_declare=True) for name in QUEUE_BINDINGS]


def dead_letter_queues(*, no_declare=False):
    """Quorum queues like the rest, so a dead letter survives the loss of a cluster node (an older
    deployment's classic ones keep serving: see declare())."""
    return [Queue(dlq_name(name), DEAD_LETTER_EXCHANGE, routing_key=name, durable=True,
                  queue_arguments={"x-queue-type": "quorum"}, no_declare=no_declare)
            for name in DEAD_LETTERED]


def declare(connection: Connection):
    """Declare exchanges, queues and bindings. Safe to run from every process at every start."""
    channel = connection.channel()
    try:
        EXCHANGE(channel).declare()
        DEAD_LETTER_EXCHANGE(channel).declare()
        EVENTS_EXCHANGE(channel).declare()
        for queue in dead_letter_queues():
            channel = _declare_queue(connection, channel, queue)
        Queue(PARKING_QUEUE, durable=True, queue_arguments={"x-queue-type": "quorum"})(channel).declare()
        for name in QUEUE_BINDINGS:
            channel = _declare_queue(connection, channel, _work_queue(name, no_declare=False))
        for name in EVENT_SUBSCRIBERS:
            queue = subscriber_queue(name)
            queue(channel).declare()
    finally:
        channel.close()


def _declare_queue(connection, channel, queue):
    try:
        queue(channel).declare()
        return channel
    except amqp.exceptions.PreconditionFailed as exc:
        # The queue exists with other arguments (an older topology). Keep serving from it rather
        # than refusing to start; `manage.py topology --check` reports it, docs/operations.md says how to migrate.
        log.warning("queue exists with other arguments, using it as it is", queue=queue.name, error=str(exc))
        channel = connection.channel()
        channel.queue_declare(queue.name, passive=True)
        channel.queue_bind(queue.name, queue.exchange.name, queue.routing_key)
        return channel


_declared = threading.Event()
_lock = threading.Lock()


def ensure_declared(app=None):
    """Declare once per process before its first publish (unroutable messages are still confirmed)."""
    if _declared.is_set():
        return
    with _lock:
        if _declared.is_set():
            return
        if app is None:
            from orderhub.celery import app
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=10)
            declare(connection)
        _declared.set()
