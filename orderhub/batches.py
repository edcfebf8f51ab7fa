"""Consumers that take a queue's messages in batches, inside a Celery worker.

A worker that consumes a queue with a batch consumer (BATCH_CONSUMERS) runs that consumer in a
thread of its own, on a connection of its own, instead of letting Celery run one task per message:
the orchestrator's replies (sagas/consumer.py, ORDERHUB_REPLY_BATCH) and each domain's commands
(workers/batches.py, ORDERHUB_COMMAND_BATCH), as orderhub/celery.py wires them; a batch size of 0 leaves the queue to Celery's own
consumer, one task per message. The loop, common to both:

1. wait for a message, then take whatever else has already arrived, up to the batch size, without
   waiting for more (a lone message is not held up);
2. hand them to the subclass's `handle`, which acks or rejects each one, only after what it did
   is committed: a crash before that gives every message of the batch back to the queue.

A lost broker connection drops what is held (it all comes back, redelivered) and the consumer
connects again, to any node of ORDERHUB_BROKER_URL. `celery control cancel_consumer <queue>` (and
`add_consumer`) pause and resume it, as they would Celery's own consumer
(orderhub/celery_consumer.py). `_with_database` holds a batch, unacked, while the database
connection is lost, and tries it again with a backoff (1 s doubling to 30 s), keeping the broker
connection's heartbeats.
"""
import importlib
import socket
import threading
import time

import structlog
from celery import bootsteps
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections
from kombu import Consumer
from kombu.exceptions import ContentDisallowed, DecodeError

from orderhub import celery_consumer, topology
from orderhub.deadletters.reasons import message_key, note_reason

log = structlog.get_logger(__name__)

DB_BACKOFF_MAX = 30.0
# Lost database connections (a restarted PostgreSQL, a killed backend) are transient.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class Batches(bootsteps.StartStopStep):
    """Worker bootstep (orderhub/celery.py): for each queue the worker consumes that has a batch
    consumer, that consumer takes the queue over from Celery's."""

    label = "Batches"

    def __init__(self, worker, **kwargs):
        from orderhub.celery import BATCH_CONSUMERS

        super().__init__(worker, **kwargs)
        self.consumers = {}
        queues = worker.app.amqp.queues
        consume_from = dict(queues.consume_from or {})
        for name, (path, batch_setting) in BATCH_CONSUMERS.items():
            batch = getattr(settings, batch_setting)
            if batch > 0 and name in consume_from:
                module, cls = path.split(":")
                consumer_class = getattr(importlib.import_module(module), cls)
                self.consumers[name] = consumer_class(worker.app, batch=batch, queue_name=name,
                                                      hostname=getattr(worker, "hostname", None))
        if self.consumers:
            queues.deselect(list(self.consumers))
        worker.batch_consumers = self.consumers

    def start(self, worker):
        for consumer in self.consumers.values():
            consumer.start()

    def stop(self, worker):
        for consumer in self.consumers.values():
            consumer.stop()

    def shutdown(self, worker):
        self.stop(worker)

    def terminate(self, worker):
        self.stop(worker)


class Poison(Exception):
    """A message nobody can handle: rejected to the dead-letter queue with this reason."""


class Stopping(Exception):
    """The worker is stopping while a batch waits for the database: the batch stays unacked."""


class BatchConsumer:
    queue_name: str = ""
    label = "batch"

    def __init__(self, app, *, batch: int, queue_name: str | None = None, hostname: str | None = None):
        self.app = app
        self.queue_name = queue_name or self.queue_name
        self.hostname = hostname
        self.batch = max(1, batch)
        self.held = []  # messages received and not yet handled (acked or rejected)
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._cancelled = threading.Event()  # set once a pause has reached the broker
        self._thread = None

    # --- lifetime ---------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self.run, name=f"{self.label}-batches", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0):
        """Finish the batch in hand (its commit and acks), then stop consuming."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def pause(self, timeout: float = 5.0):
        """Stop consuming; returns once the broker has been told (or after `timeout`), so nothing
        more is delivered after it returns (what was delivered before is still handled)."""
        self._cancelled.clear()
        self._paused.set()
        if self._thread is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._cancelled.wait(timeout)

    def resume(self):
        self._paused.clear()

    @property
    def paused(self):
        return self._paused.is_set()

    def run(self):
        while not self._stopping.is_set():
            try:
                with self.app.connection_for_read() as connection:
                    connection.ensure_connection(max_retries=3, **celery_consumer.RECONNECT)
                    self._consume(connection)
            except Exception as exc:  # the broker (or a node of it) is gone: connect again
                if self._stopping.is_set():
                    break
                log.warning(f"{self.label} consumer lost the broker; connecting again", error=repr(exc))
                self.held = []  # unacked: the broker gives them back
                self._stopping.wait(0.5)
        close_old_connections()

    def _received(self, message):
        self.held.append(message)

    def _undecodable(self, message, exc):
        """kombu could not make a message of it (a compression header that lies, ...): poison,
        as Celery's consumer says (orderhub/celery_consumer.py)."""
        self.poison(message, f"malformed: cannot decode the body ({message.content_type}): {exc}"[:1000])

    def _consume(self, connection):
        channel = connection.channel()
        channel.basic_qos(prefetch_size=0, prefetch_count=self.batch, a_global=False)
        [queue] = [q for q in topology.celery_queues() if q.name == self.queue_name]
        consumer = Consumer(channel, queues=[queue], on_message=self._received, accept=["json"],
                            on_decode_error=self._undecodable, auto_declare=False)
        consuming = False
        log.info(f"{self.label} consumer ready", queue=self.queue_name, batch=self.batch, broker=connection.as_uri())
        while not self._stopping.is_set():
            if self.paused and consuming:
                consumer.cancel()  # what arrives until the broker's cancel-ok is handled below
                consuming = False
                log.info(f"{self.label} consumer paused (cancel_consumer)", queue=self.queue_name)
            if self.paused:
                self._cancelled.set()
            elif not self.paused and not consuming:
                consumer.consume()
                consuming = True
            if not self.held:
                try:
                    connection.drain_events(timeout=1.0)
                except socket.timeout:
                    connection.heartbeat_check()
                    continue
            while len(self.held) < self.batch:
                try:
                    connection.drain_events(timeout=0)
                except socket.timeout:
                    break
            taken, self.held = self.held, []
            if taken:
                self.handle(taken, connection)
            connection.heartbeat_check()

    def handle(self, messages, connection=None):
        """Handle `messages` in order, and ack or reject each one."""
        raise NotImplementedError

    # How a task message Celery could not run is described (after "malformed: ").
    problem_prefix = ""

    def read_task(self, message, known) -> tuple[str, list, dict]:
        """(task name, args, kwargs) of a task message whose task is in `known`, checked as
        Celery's consumer checks it (orderhub/celery_consumer.py); Poison with the reason otherwise."""
        headers = message.headers if isinstance(message.headers, dict) else {}
        task_name = headers.get("task")
        if task_name is None:
            raise Poison("malformed: not a task message (no task header)")
        if task_name not in known:
            raise Poison(f"malformed: unknown task {task_name!r:.200}")
        try:
            problem = celery_consumer.task_message_problem(self.app, message)
            if not problem:
                args, kwargs, _ = message.decode()
        except (DecodeError, ContentDisallowed) as exc:
            raise Poison(f"malformed: cannot decode the body ({message.content_type}): {exc}") from None
        except Exception as exc:  # a compression header that lies, ...: Celery's consumer says the same
            raise Poison(f"malformed: {type(exc).__name__}: {exc}"[:1000]) from None
        if problem:
            raise Poison(f"malformed: {self.problem_prefix}{problem}")
        return task_name, list(args), dict(kwargs)

    # --- for the subclasses -----------------------------------------------------------------
    def _with_database(self, work, connection):
        """Run `work`; while the database connection is lost, wait and run it again."""
        attempt = 0
        while True:
            try:
                return work()
            except TRANSIENT_DB_ERRORS as exc:
                attempt += 1
                delay = min(2 ** (attempt - 1), DB_BACKOFF_MAX)
                log.warning(f"{self.label} batch held: the database connection was lost; tried again",
                            attempt=attempt, in_s=delay, error=repr(exc))
                for alias in connections:
                    connections[alias].close_if_unusable_or_obsolete()
                self._wait(delay, connection)

    def _wait(self, seconds, connection):
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(min(left, 1.0)):
                raise Stopping()
            if connection is not None:
                connection.heartbeat_check()

    def poison(self, message, why):
        key = message_key(headers=message.headers, properties=message.properties, body=message.body)
        log.error(f"{self.label} message dead-lettered", why=why[:300], message_id=key)
        note_reason(key, why)
        message.reject(requeue=False)
