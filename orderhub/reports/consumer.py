"""The `projections` process: consumes projections.sales (order events) and applies each one to
the sales projection. A message is acked after its transaction commits; an event it cannot apply
as it is goes to projections.sales.dlq (and so to the archive, with its reason); with the database
down it is put back and tried again."""
import time

import structlog
from django.db import InterfaceError, OperationalError, close_old_connections
from kombu.mixins import ConsumerMixin

from orderhub import topology
from orderhub.deadletters.reasons import message_key, note_reason
from orderhub.reports import projection

log = structlog.get_logger(__name__)


class Projector(ConsumerMixin):
    def __init__(self, connection):
        self.connection = connection

    def get_consumers(self, Consumer, channel):
        channel.basic_qos(prefetch_size=0, prefetch_count=20, a_global=False)
        queue = topology.subscriber_queue(projection.QUEUE, no_declare=True)
        return [Consumer(queues=[queue], on_message=self.on_message, accept=None)]

    def on_connection_revived(self):
        topology.declare(self.connection)

    def on_decode_error(self, message, exc):
        # kombu could not even unpack it (a `compression` header over a body that is not
        # compressed, say); ConsumerMixin would ack it away.
        self.dead_letter(message, f"cannot decode the message: {exc!r:.300}")

    def dead_letter(self, message, why):
        reason = f"malformed: {why}"  # as every consumer notes its poison
        log.warning("event dead-lettered", reason=reason, message_id=message.properties.get("message_id"))
        note_reason(message_key(headers=dict(message.headers or {}), properties=dict(message.properties or {}),
                                body=message.body), reason)
        message.reject(requeue=False)

    def on_message(self, message):
        try:
            event = projection.decode(message.body)
        except projection.BadEvent as exc:
            self.dead_letter(message, str(exc))
            return
        try:
            close_old_connections()
            applied = projection.apply(event)
        except (OperationalError, InterfaceError) as exc:
            log.warning("projection database unavailable, event put back", error=repr(exc))
            time.sleep(1)
            message.requeue()
            return
        log.debug("event applied" if applied else "event changed nothing", type=event["type"], id=event["id"])
        message.ack()
