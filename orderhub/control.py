"""Celery's remote control (`celery inspect ping`, Flower's worker view, the containers' health
checks) with mailbox queues that survive the loss of a RabbitMQ node.

A Celery worker listens for broadcasts on an exclusive queue, `<node name>.celery.pidbox`, and
declares it under that same name each time it reconnects. When the RabbitMQ node holding the queue
dies, the rest of the cluster can still hold the queue's record, owned by the dead connection,
when the worker reconnects to another node. The re-declare is then refused (405
RESOURCE_LOCKED), kombu raises InconsistencyError, and Celery stops the worker ("Unrecoverable
error"). Chaos on a three-node cluster showed every process connected to the killed node exit
that way within 100 ms (issue 24).

Broadcasts reach a worker through the fanout exchange `celery.pidbox`, and each message names its
destination: the queue's name routes nothing. So each declare here takes a name of its own (the
node name, then a random suffix). A reconnect never meets the record of an earlier connection,
and that record goes away with its connection or its node. Replies work the same way: a client's
reply queue is bound by its routing key (the client's oid), and gets a fresh name per call.

What this gives up: kombu's warning that two workers share one node name (it saw the second
consumer on the shared queue). Node names here are unique by construction (`-n name.N@host`).
"""
from uuid import uuid4

from celery.app.control import Control as CeleryControl
from kombu import Queue
from kombu.pidbox import Mailbox as KombuMailbox


def unique_name(name: str) -> str:
    return f"{name}.{uuid4().hex[:12]}"


class Mailbox(KombuMailbox):
    def get_queue(self, hostname):
        return self._renamed(super().get_queue(hostname))

    def get_reply_queue(self):
        return self._renamed(super().get_reply_queue())

    @staticmethod
    def _renamed(queue: Queue) -> Queue:
        return Queue(
            unique_name(queue.name),
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            durable=queue.durable,
            exclusive=queue.exclusive,
            auto_delete=queue.auto_delete,
            expires=queue.expires,
            message_ttl=queue.message_ttl,
        )


class Control(CeleryControl):
    Mailbox = Mailbox
