"""The topology declaration is idempotent and survives a queue whose arguments changed."""
import uuid

import amqp
import pytest

from orderhub import topology
from orderhub.celery import app

pytestmark = [pytest.mark.integration]


def test_declaring_twice_is_harmless():
    with app.connection_for_write() as connection:
        topology.declare(connection)
        topology.declare(connection)


def test_a_queue_declared_earlier_with_other_arguments_does_not_stop_a_process_from_starting(monkeypatch):
    name = f"test.migrate.{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(topology.QUEUE_BINDINGS, name, "test.migrate.#")
    with app.connection_for_write() as connection:
        channel = connection.channel()
        channel.queue_declare(name, durable=True)  # an "old" classic queue with no arguments
        try:
            channel = topology._declare_queue(connection, connection.channel(),
                                              topology._work_queue(name, no_declare=False))
            # Still usable: the binding is in place and messages route to it.
            channel.basic_publish(amqp.Message(b"{}"), exchange=topology.EXCHANGE.name, routing_key="test.migrate.x")
            assert channel.queue_declare(name, passive=True).message_count == 1
        finally:
            connection.channel().queue_delete(name)
