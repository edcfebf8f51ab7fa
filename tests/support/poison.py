"""Malformed messages of every kind seen to break a consumer, for the chaos suite and the tests.

Each kind is a function of a message id returning what to publish: a body (bytes) and its headers,
content type and encoding. The message id also travels as the AMQP message_id property, so every
message has a known key in the dead-letter archive whatever its headers are."""
import codecs
import json

from kombu import Connection

from orderhub import topology

# The task each queue's consumer would expect, for kinds that look like task messages.
TASK_OF_QUEUE = {
    "inventory.commands": "inventory.reserve",
    "payments.commands": "payments.authorize",
    "shipping.commands": "shipping.create",
    "notifications.commands": "notifications.send",
    topology.REPLIES_QUEUE: topology.REPLY_TYPE,
    topology.CONTROL_QUEUE: "saga.control.cancel",
    topology.TICKS_QUEUE: "saga.tick.relay_outbox",
}


def _task(body, *, task, message_id, **headers):
    return {"body": body if isinstance(body, bytes) else json.dumps(body).encode(),
            "headers": {"task": task, "id": message_id} | headers,
            "content_type": "application/json", "content_encoding": "utf-8"}


KINDS = {
    "not a task": lambda task, mid: {"body": b'{"poison": true}', "headers": {}, "content_type": "application/json",
                                     "content_encoding": "utf-8"},
    "body an object": lambda task, mid: _task({"args": []}, task=task, message_id=mid),
    "body null": lambda task, mid: _task(None, task=task, message_id=mid),
    "body a string": lambda task, mid: _task("hello", task=task, message_id=mid),
    "body empty list": lambda task, mid: _task([], task=task, message_id=mid),
    "body two elements": lambda task, mid: _task([[], {}], task=task, message_id=mid),
    "embed not an object": lambda task, mid: _task([[], {}, 5], task=task, message_id=mid),
    "kwargs not an object": lambda task, mid: _task([[{}], 5, {}], task=task, message_id=mid),
    "args do not fit": lambda task, mid: _task([[1, 2, 3], {"nope": 1}, {}], task=task, message_id=mid),
    "no id header": lambda task, mid: _task([[{}], {}, {}], task=task, message_id=mid) | {
        "headers": {"task": task}},
    "timelimit not a pair": lambda task, mid: _task([[{}], {}, {}], task=task, message_id=mid, timelimit="soon"),
    "retries not a count": lambda task, mid: _task([[{}], {}, {}], task=task, message_id=mid, retries="many"),
    "eta far ahead": lambda task, mid: _task([[{}], {}, {}], task=task, message_id=mid,
                                             eta="3000-01-01T00:00:00+00:00"),
    "eta garbage": lambda task, mid: _task([[{}], {}, {}], task=task, message_id=mid, eta=[1, 2]),
    "expires set": lambda task, mid: _task([[{}], {}, {}], task=task, message_id=mid, expires="2000-01-01T00:00:00"),
    "compression not compressed": lambda task, mid: _task([[{}], {}, {}], task=task, message_id=mid,
                                                         compression="application/x-gzip"),
    "not json": lambda task, mid: _task(b"{not json", task=task, message_id=mid),
    "utf-16 with nul bytes": lambda task, mid: _task(codecs.encode(json.dumps([[{}], {}, {}]), "utf-16-le"),
                                                    task=task, message_id=mid),
    "pickle": lambda task, mid: _task(b"\x80\x04N.", task=task, message_id=mid) | {
        "content_type": "application/x-python-serialize", "content_encoding": "binary"},
    "empty body": lambda task, mid: _task(b"", task=task, message_id=mid),
    "unknown task": lambda task, mid: _task([[{}], {}, {}], task="no.such.task", message_id=mid),
}

# Every queue a process consumes: the work queues (ticks included), the event subscribers' queues
# and the dead-letter queues.
QUEUES = [*topology.QUEUE_BINDINGS, *topology.EVENT_SUBSCRIBERS,
          *(topology.dlq_name(name) for name in topology.DEAD_LETTERED)]


def malformed(kind, queue, message_id):
    return KINDS[kind](TASK_OF_QUEUE.get(queue.removesuffix(".dlq"), "inventory.reserve"), message_id)


def publish_malformed(connection: Connection, queue, kind, message_id):
    message = malformed(kind, queue, message_id)
    connection.Producer().publish(
        message["body"], exchange="", routing_key=queue, headers=message["headers"],
        content_type=message["content_type"], content_encoding=message["content_encoding"],
        message_id=message_id, retry=True,
    )
