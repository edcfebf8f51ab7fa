"""The `deadletters` process: consumes every `<queue>.dlq` and archives each message.

A message is acked only after its row is committed; if the database is down the message is
put back and tried again, so nothing dead-lettered is ever lost on the way to the archive.
"""
import logging
import time

from django.db import InterfaceError, OperationalError, close_old_connections
from kombu.mixins import ConsumerMixin

from orderhub import topology
from orderhub.deadletters.services import deadletter_archive

log = logging.getLogger(__name__)


class Archiver(ConsumerMixin):
    def __init__(self, connection):
        self.connection = connection

    def get_consumers(self, Consumer, channel):
        channel.basic_qos(prefetch_size=0, prefetch_count=10, a_global=False)
        return [Consumer(queues=topology.dead_letter_queues(), on_message=self.on_message, accept=None)]

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
            log.warning("archive unavailable, message put back: %r", exc)
            time.sleep(1)
            message.requeue()
            return
        except Exception:
            # A bug in the archiver must not lose the message nor stop the others: keep it where it
            # is (unacked messages go back to the queue when this process restarts) and go on.
            log.exception("could not archive a dead letter; it stays in %s", queue_name)
            return
        message.ack()
