"""The orchestrator's reply consumer: replies applied in batches, one transaction and one commit each.

A Celery worker that consumes saga.replies (the orchestrator) runs this consumer in a thread of its
own, on a connection of its own, instead of letting Celery run one task per reply (ORDERHUB_REPLY_BATCH
replies at most per batch; 0 leaves saga.replies to Celery's consumer and `sagas.tasks.receive_reply`).
Its loop:

1. wait for a message, then take whatever else has already arrived, up to the batch size, without
   waiting for more (a lone saga is not held up);
2. check each message as Celery's consumer would (orderhub/celery_consumer.py): one that is not a
   reply or a sweep marker, or is malformed, is rejected to saga.replies.dlq with its reason noted;
3. apply the replies with `engine.replies_apply`: the sagas' rows locked in id order, one commit.
   A deadline sweep marker ends a batch: the replies queued before it are applied, then the sweep
   runs (a reply waiting in our own queue is applied before its deadline is judged). A redelivered
   message (its consumer died holding it) is applied alone, so the messages prefetched with it do
   not creep toward the queue's delivery limit with it;
4. ack each message only after the commit: a crash before it gives every message of the batch back
   to the queue (the commands the batch wrote are safe in the outbox either way).

A lost database connection holds the batch, unacked, and tries it again with a backoff (1 s
doubling to 30 s) until the database answers; the broker connection's heartbeats are kept
meanwhile. Any other error rolls the batch back and its replies are applied again one per
transaction: a reply that fails alone is dead-lettered with the error as its reason, the others go
through. A lost broker connection drops what is held (it all comes back, redelivered) and the
consumer connects again, to any node of ORDERHUB_BROKER_URL.

`celery control cancel_consumer saga.replies` (and `add_consumer`) pause and resume it, as they
would Celery's own consumer (orderhub/celery_consumer.py).
"""
import socket
import threading
import time

import structlog
from celery import bootsteps
from django.conf import settings
from django.db import close_old_connections, connections
from kombu import Consumer
from kombu.exceptions import ContentDisallowed, DecodeError

from contracts import MalformedMessage, Reply
from orderhub import celery_consumer, process_metrics, topology
from orderhub.deadletters.reasons import message_key, note_reason
from orderhub.topology import DEADLINES_DUE_TYPE, REPLIES_QUEUE, REPLY_TYPE

log = structlog.get_logger(__name__)

DB_BACKOFF_MAX = 30.0


class ReplyBatches(bootsteps.StartStopStep):
    """Worker bootstep (orderhub/celery.py): when the worker consumes saga.replies, this consumer
    takes the queue over from Celery's."""

    label = "ReplyBatches"

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.consumer = None
        queues = worker.app.amqp.queues
        consume_from = queues.consume_from or {}
        if settings.REPLY_BATCH > 0 and REPLIES_QUEUE in consume_from and len(consume_from) > 1:
            queues.deselect([REPLIES_QUEUE])
            self.consumer = ReplyConsumer(worker.app, batch=settings.REPLY_BATCH)
        worker.reply_batches = self.consumer

    def start(self, worker):
        if self.consumer is not None:
            self.consumer.start()

    def stop(self, worker):
        if self.consumer is not None:
            self.consumer.stop()

    def shutdown(self, worker):
        self.stop(worker)

    def terminate(self, worker):
        self.stop(worker)


class Poison(Exception):
    """A message nobody can apply: rejected to the dead-letter queue with this reason."""


class ReplyConsumer:
    def __init__(self, app, *, batch: int):
        self.app = app
        self.batch = max(1, batch)
        self.held = []  # messages received and not yet handled (acked or rejected)
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._thread = None

    # --- lifetime ---------------------------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self.run, name="reply-batches", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0):
        """Finish the batch in hand (its commit and acks), then stop consuming."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def pause(self):
        self._paused.set()

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
                log.warning("reply consumer lost the broker; connecting again", error=repr(exc))
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
        [queue] = [q for q in topology.celery_queues() if q.name == REPLIES_QUEUE]
        consumer = Consumer(channel, queues=[queue], on_message=self._received, accept=["json"],
                            on_decode_error=self._undecodable, auto_declare=False)
        consuming = False
        log.info("reply consumer ready", batch=self.batch, broker=connection.as_uri())
        while not self._stopping.is_set():
            if self.paused and consuming:
                consumer.cancel()  # what arrives until the broker's cancel-ok is handled below
                consuming = False
                log.info("reply consumer paused (cancel_consumer)")
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
            self.handle(taken, connection)
            connection.heartbeat_check()

    # --- a batch ----------------------------------------------------------------------------
    def handle(self, messages, connection=None):
        """Apply what `messages` hold, in order, and ack or reject each one."""
        pending = []
        for message in messages:
            try:
                kind, body = self.read(message)
            except Poison as exc:
                self.poison(message, str(exc))
                continue
            if kind == DEADLINES_DUE_TYPE:
                self.apply(pending, connection)
                pending = []
                self.sweep(message, body, connection)
            elif (message.delivery_info or {}).get("redelivered"):
                self.apply(pending, connection)
                pending = []
                self.apply([(message, body)], connection)
            else:
                pending.append((message, body))
        self.apply(pending, connection)

    def read(self, message):
        """(the task name, its one argument) of a reply or a sweep marker; Poison otherwise."""
        headers = message.headers if isinstance(message.headers, dict) else {}
        task = headers.get("task")
        if task is None:
            raise Poison("malformed: not a task message (no task header)")
        if task not in (REPLY_TYPE, DEADLINES_DUE_TYPE):
            raise Poison(f"malformed: unknown task {task!r:.200}")
        try:
            problem = celery_consumer.task_message_problem(self.app, message)
            if not problem:
                (body,), _, _ = message.decode()
        except (DecodeError, ContentDisallowed) as exc:
            raise Poison(f"malformed: cannot decode the body ({message.content_type}): {exc}") from None
        except Exception as exc:  # a compression header that lies, ...: Celery's consumer says the same
            raise Poison(f"malformed: {type(exc).__name__}: {exc}"[:1000]) from None
        if problem:
            raise Poison(f"malformed: invalid task message: {problem}")
        if task == DEADLINES_DUE_TYPE:
            return task, body
        try:
            return task, Reply.from_dict(body)
        except MalformedMessage as exc:
            raise Poison(f"malformed: {exc}") from None

    def apply(self, pairs, connection=None):
        """Apply (message, reply) pairs in one transaction, then ack them."""
        from sagas import engine, tasks

        if not pairs:
            return
        close_old_connections()
        try:
            outcomes = self._with_database(lambda: engine.replies_apply([reply for _, reply in pairs]), connection)
        except _Stopping:
            return  # unacked: back to the queue when the connection closes
        except Exception as exc:
            if len(pairs) > 1:
                log.warning("a batch of replies failed; applying them one at a time", replies=len(pairs),
                            error=repr(exc))
                for pair in pairs:
                    self.apply([pair], connection)
                return
            message, reply = pairs[0]
            log.exception("a reply could not be applied; dead-lettered", saga_id=reply.saga_id, step=reply.step)
            self.poison(message, f"failed: {type(exc).__name__}: {exc}"[:1000])
            return
        process_metrics.REPLY_BATCH.observe(len(pairs))
        for (message, reply), (outcome, why) in zip(pairs, outcomes):
            if outcome == "unknown":
                self.poison(message, tasks.unknown_saga_reason(reply))
            elif outcome == "unreadable":
                self.poison(message, f"unreadable version: {why}")
            else:
                message.ack()

    def sweep(self, message, body, connection=None):
        from sagas import tasks

        try:
            due_before = tasks.marker_due_before(body)
        except ValueError as exc:
            self.poison(message, str(exc))
            return
        close_old_connections()
        try:
            # The sweep skips a run on a lost connection by itself (a marker is worth one run).
            tasks.sweep_due(due_before)
        except Exception:
            log.exception("deadline sweep failed; the next marker runs it again")
        message.ack()

    def _with_database(self, work, connection):
        """Run `work`; while the database connection is lost, wait and run it again."""
        from sagas.tasks import TRANSIENT_DB_ERRORS

        attempt = 0
        while True:
            try:
                return work()
            except TRANSIENT_DB_ERRORS as exc:
                attempt += 1
                delay = min(2 ** (attempt - 1), DB_BACKOFF_MAX)
                log.warning("replies not applied: the database connection was lost; held and tried again",
                            attempt=attempt, in_s=delay, error=repr(exc))
                for alias in connections:
                    connections[alias].close_if_unusable_or_obsolete()
                self._wait(delay, connection)

    def _wait(self, seconds, connection):
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(min(left, 1.0)):
                raise _Stopping()
            if connection is not None:
                connection.heartbeat_check()

    def poison(self, message, why):
        key = message_key(headers=message.headers, properties=message.properties, body=message.body)
        log.error("reply dead-lettered", why=why[:300], message_id=key)
        note_reason(key, why)
        message.reject(requeue=False)


class _Stopping(Exception):
    pass
