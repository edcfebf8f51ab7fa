"""What every subscriber process of `orderhub.events` shares (the sales projection's, the
webhooks'): a kombu consumer of its own quorum queue that takes what has arrived in batches (up to
`batch`, never waiting for more: a lone event is not held up), applies a batch in one transaction,
and acks its events once that is committed. An event it cannot read is dead-lettered alone with
its reason (to its DLQ, so to the archive); with the database unreachable the batch is put back.
A batch that fails otherwise is applied again one event at a time, so only the failing one fails."""
import socket
import time

import structlog
from django.db import InterfaceError, OperationalError, close_old_connections
from kombu.mixins import ConsumerMixin

from orderhub import events, topology
from orderhub.deadletters.reasons import message_key, note_reason

log = structlog.get_logger(__name__)


class EventSubscriber(ConsumerMixin):
    """Subclasses name their `queue`, `read(message)` one message into what `apply` takes (raising
    events.BadEvent for one they cannot read), and `apply(items)` a batch in one transaction;
    `received(items)` runs after the batch is acked."""

    queue: str
    batch = 50

    def __init__(self, connection):
        self.connection = connection
        self.held = []  # delivered, not yet acked or rejected
        self._draining = None

    def get_consumers(self, Consumer, channel):
        channel.basic_qos(prefetch_size=0, prefetch_count=self.batch, a_global=False)
        queue = topology.subscriber_queue(self.queue, no_declare=True)
        return [Consumer(queues=[queue], on_message=self.held.append, accept=None)]

    def on_connection_revived(self):
        self.held.clear()  # unacked on the lost connection: the broker gives them back
        topology.declare(self.connection)

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        self._draining = connection

    def on_decode_error(self, message, exc):
        # kombu could not even unpack it (a `compression` header over a body that is not
        # compressed, say); ConsumerMixin would ack it away.
        self.dead_letter(message, f"cannot decode the message: {exc!r:.300}")

    def dead_letter(self, message, why):
        reason = f"malformed: {why}"  # as every consumer notes its poison
        log.warning("event dead-lettered", queue=self.queue, reason=reason,
                    message_id=message.properties.get("message_id"))
        note_reason(message_key(headers=dict(message.headers or {}), properties=dict(message.properties or {}),
                                body=message.body), reason)
        message.reject(requeue=False)

    def on_iteration(self):
        """Before the loop waits for the next message: take what else has arrived, and handle it."""
        if not self.held:
            return
        while len(self.held) < self.batch and self._draining is not None:
            try:
                self._draining.drain_events(timeout=0)
            except socket.timeout:
                break
        taken, self.held[:] = list(self.held), []
        self.handle(taken)

    def handle(self, messages):
        close_old_connections()
        readable = []
        for message in messages:
            try:
                readable.append((message, self.read(message)))
            except events.BadEvent as exc:
                self.dead_letter(message, str(exc))
        if not readable:
            return
        try:
            self._apply(readable)
        except (OperationalError, InterfaceError) as exc:
            log.warning("database unavailable, events put back", queue=self.queue, events=len(readable),
                        error=repr(exc))
            time.sleep(1)
            for message, _ in readable:
                if not message.acknowledged:  # (a batch applied one at a time may have acked some)
                    message.requeue()

    def _apply(self, readable):
        try:
            self.apply([item for _, item in readable])
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            if len(readable) == 1:
                raise
            log.warning("a batch of events failed; applying them one at a time", queue=self.queue,
                        events=len(readable), exc_info=True)
            for one in readable:
                self._apply([one])
            return
        for message, _ in readable:
            message.ack()
        self.received([item for _, item in readable])

    def read(self, message):
        raise NotImplementedError

    def apply(self, items):
        raise NotImplementedError

    def received(self, items):
        pass
