"""Publishing many messages with one wait for the broker's confirms (used by the outbox relay,
sagas/outbox.py, and by the domain workers' replies, workers/batches.py)."""
import os
import socket
import threading
import time

from kombu.exceptions import OperationalError as KombuOperationalError

from orderhub import events

# The broker is down or unreachable: nothing can be published until it is back.
BROKER_UNREACHABLE = (KombuOperationalError, ConnectionError, TimeoutError, OSError)

# How long a batch waits for the broker's confirms before leaving what is unconfirmed to the relay.
CONFIRM_TIMEOUT = 10.0


class ConfirmedBatch:
    """Publishes on a connection of its own (one per thread), on a channel in confirm mode, without
    waiting for each confirm: `send` each row, then `wait` once for the broker to confirm them all.
    Commands go out through Celery's `send_task` (its task message, its publish signals, so tracing
    still sees the hop), events as they are (orderhub/events.py). The connection keeps no
    heartbeat; a send that finds it gone connects once more and sends the batch's rows again (none
    was confirmed yet, and every consumer deduplicates by message id)."""

    def __init__(self):
        self.connection = None
        self.producer = None
        self.outstanding = {}  # delivery tag -> message id, sent and not yet confirmed
        self.sent = []  # this batch's rows, in case the connection must be made anew
        self.confirmed, self.refused = [], []
        self.seq = 0

    def _open(self):
        from kombu import Producer

        from orderhub import topology
        from orderhub.celery import app

        topology.ensure_declared(app)
        self.close()
        connection = app.connection_for_write(transport_options={"confirm_publish": False}, heartbeat=0)
        connection.ensure_connection(max_retries=1)
        channel = connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self.connection, self.producer, self.seq, self.outstanding = connection, Producer(channel, auto_declare=False), 0, {}

    def close(self):
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # already gone
                pass
        self.connection = self.producer = None

    def _settle(self, tag, multiple, into):
        tags = [t for t in self.outstanding if t <= tag] if multiple else [tag]
        for t in tags:
            message_id = self.outstanding.pop(t, None)
            if message_id is not None:
                into(message_id)

    def _on_ack(self, tag, multiple):
        self._settle(tag, multiple, self.confirmed.append)

    def _on_nack(self, tag, multiple):
        self._settle(tag, multiple, lambda message_id: self.refused.append((message_id, "nacked by the broker")))

    def send(self, message_id, message_type, body):
        try:
            if self.producer is None:
                self._open()
            self._send(message_id, message_type, body)
        except BROKER_UNREACHABLE:
            # The connection may have been closed under us while idle: once more, on a new one.
            self._open()
            for row in list(self.sent):
                self._send(*row, again=True)
            self._send(message_id, message_type, body)

    def _send(self, message_id, message_type, body, *, again=False):
        from orderhub.celery import app

        if message_type.startswith(events.OUTBOX_PREFIX):
            events.publish(body, message_id=str(message_id), producer=self.producer, retry=False)
        else:
            app.send_task(message_type, args=[body], task_id=str(message_id), producer=self.producer, retry=False,
                          argsrepr=f"[<{message_type} body withheld>]", kwargsrepr="{}")
        self.seq += 1
        self.outstanding[self.seq] = message_id
        if not again:
            self.sent.append((message_id, message_type, body))

    def wait(self, timeout=CONFIRM_TIMEOUT):
        """(the message ids the broker confirmed, (message id, why) of those it did not), for the
        rows sent since the last wait."""
        deadline = time.monotonic() + timeout
        try:
            while self.outstanding and (left := deadline - time.monotonic()) > 0:
                try:
                    self.connection.drain_events(timeout=left)
                except socket.timeout:
                    break
        except BROKER_UNREACHABLE as exc:
            self.close()
            self.refused.extend((message_id, f"connection lost before the confirm: {exc!r}")
                                for message_id in self.outstanding.values())
            self.outstanding = {}
        if self.outstanding:
            self.refused.extend((message_id, f"no confirm within {timeout} s") for message_id in self.outstanding.values())
            self.close()  # a late confirm must not be counted against the next batch's tags
            self.outstanding = {}
        confirmed, refused = self.confirmed, self.refused
        self.confirmed, self.refused, self.sent = [], [], []
        return confirmed, refused


_batches = threading.local()


def confirmed_batch() -> ConfirmedBatch:
    """This thread's ConfirmedBatch (after a fork, a new one: a connection is never shared)."""
    batch = getattr(_batches, "batch", None)
    if batch is None or getattr(_batches, "pid", None) != os.getpid():
        batch = _batches.batch = ConfirmedBatch()
        _batches.pid = os.getpid()
    return batch
