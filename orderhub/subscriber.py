"""What every subscriber process of `orderhub.events` shares (the sales projection's, the
webhooks'): a kombu consumer of its own quorum queue that acks an event once what it made of it
is committed, dead-letters one it cannot read with its reason (to its DLQ, so to the archive), and
puts one back while its database is unreachable."""
import time

import structlog
from django.db import InterfaceError, OperationalError, close_old_connections
from kombu.mixins import ConsumerMixin

from orderhub import events, topology
from orderhub.deadletters.reasons import message_key, note_reason

log = structlog.get_logger(__name__)


class EventSubscriber(ConsumerMixin):
    """Subclasses name their `queue` and `receive(message)` one message (raising events.BadEvent
    for one they cannot read); `received()` runs after each ack."""

    queue: str
    prefetch = 20

    def __init__(self, connection):
        self.connection = connection

    def get_consumers(self, Consumer, channel):
        channel.basic_qos(prefetch_size=0, prefetch_count=self.prefetch, a_global=False)
        queue = topology.subscriber_queue(self.queue, no_declare=True)
        return [Consumer(queues=[queue], on_message=self.on_message, accept=None)]

    def on_connection_revived(self):
        topology.declare(self.connection)

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

    def on_message(self, message):
        try:
            close_old_connections()
            self.receive(message)
        except events.BadEvent as exc:
            self.dead_letter(message, str(exc))
            return
        except (OperationalError, InterfaceError) as exc:
            log.warning("database unavailable, event put back", queue=self.queue, error=repr(exc))
            time.sleep(1)
            message.requeue()
            return
        message.ack()
        self.received()

    def receive(self, message):
        raise NotImplementedError

    def received(self):
        pass
