"""The `deadletters` process: consumes every `<queue>.dlq` and archives each message.

A message is acked only after its row is committed; if the database is down the message is
put back and tried again, so nothing dead-lettered is ever lost on the way to the archive. A
message the archive cannot store at all is moved, as it is, to the parking queue and counted.
"""
import time

import structlog
from django.db import InterfaceError, OperationalError, close_old_connections
from kombu.mixins import ConsumerMixin

from orderhub import topology
from orderhub.deadletters.reasons import parked_count_add
from orderhub.deadletters.services import deadletter_archive

log = structlog.get_logger(__name__)


# AMQP properties a parked message keeps (the rest are set anew or describe the delivery).
KEPT_PROPERTIES = ("message_id", "correlation_id", "type", "app_id", "timestamp", "priority", "expiration",
                   "reply_to")


class Archiver(ConsumerMixin):
    def __init__(self, connection):
        self.connection = connection

    def get_consumers(self, Consumer, channel):
        channel.basic_qos(prefetch_size=0, prefetch_count=10, a_global=False)
        # Declared by topology.declare() (on_connection_revived), which copes with an older topology.
        return [Consumer(queues=topology.dead_letter_queues(no_declare=True), on_message=self.on_message, accept=None)]

    def on_decode_error(self, message, exc):
        # kombu would log and ack it away (a `compression` header over a body that is not
        # compressed, say): the archive keeps it raw, as it came, like any other dead letter.
        log.warning("dead letter that cannot be decoded, archived raw", error=repr(exc))
        self.on_message(message)

    def on_connection_revived(self):
        topology.declare(self.connection)

    def on_message(self, message):
        dlq = message.delivery_info.get("routing_key", "")
        queue_name = dlq if dlq.endswith(".dlq") else topology.dlq_name(dlq)
        try:
            close_old_connections()
            deadletter_archive(body=message.body, headers=dict(message.headers or {}),
                               properties=dict(message.properties or {}), dlq=queue_name)
        except (OperationalError, InterfaceError) as exc:
            log.warning("archive unavailable, message put back", error=repr(exc))
            time.sleep(1)
            message.requeue()
            return
        except Exception:
            # A message the archive cannot store must neither be lost nor hold up the others (left
            # unacked, enough of them would stop the archiver): it moves to the parking queue.
            log.exception("could not archive a dead letter; parking it", queue=queue_name, parking=topology.PARKING_QUEUE)
            self.park(message, queue_name)
            return
        message.ack()

    def park(self, message, queue_name):
        try:
            producer = self.connection.Producer()
            producer.publish(
                message.body, exchange="", routing_key=topology.PARKING_QUEUE,
                headers=dict(message.headers or {}) | {"x-parked-from": queue_name},
                content_type=message.content_type, content_encoding=message.content_encoding,
                delivery_mode=2, retry=True, retry_policy={"max_retries": 3},
                **{k: v for k, v in (message.properties or {}).items() if k in KEPT_PROPERTIES},
            )
        except Exception:
            log.exception("could not park the message either; it stays where it is", queue=queue_name)
            return
        parked_count_add()
        message.ack()
