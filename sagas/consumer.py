"""The orchestrator's reply consumer: replies applied in batches, one transaction and one commit each.

A Celery worker that consumes saga.replies (the orchestrator) runs this consumer in a thread of its
own, on a connection of its own, instead of letting Celery run one task per reply (ORDERHUB_REPLY_BATCH
replies at most per batch; 0 leaves saga.replies to Celery's consumer and `sagas.tasks.receive_reply`).
The loop, the pause and the reconnects are orderhub/batches.py's. A batch:

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
import structlog
from django.db import close_old_connections

from contracts import MalformedMessage, Reply
from orderhub import process_metrics
from orderhub.batches import BatchConsumer, Poison, Stopping
from orderhub.topology import DEADLINES_DUE_TYPE, REPLIES_QUEUE, REPLY_TYPE

log = structlog.get_logger(__name__)


class ReplyConsumer(BatchConsumer):
    queue_name = REPLIES_QUEUE
    label = "reply"
    problem_prefix = "invalid task message: "

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
        task, args, _ = self.read_task(message, (REPLY_TYPE, DEADLINES_DUE_TYPE))
        if len(args) != 1:
            raise Poison(f"malformed: {self.problem_prefix}{task} takes one argument, not {len(args)}")
        [body] = args
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
        except Stopping:
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
