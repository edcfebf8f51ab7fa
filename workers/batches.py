"""A domain worker's command consumer: commands handled in batches, one transaction and one commit
for up to 32 of them, their replies published with one wait for the broker's confirms.

A Celery worker that consumes `<domain>.commands` runs this consumer in a thread of its own, on a
connection of its own (orderhub/batches.py: the loop, pause and reconnects), instead of one Celery
task per command (ORDERHUB_COMMAND_BATCH commands at most per batch; 0 leaves the queue to Celery's
consumer and the command tasks). A batch:

1. each message is checked as Celery's consumer would check it (orderhub/celery_consumer.py): one
   that is not a task message, names an unknown task or is malformed is rejected to the queue's
   dead-letter queue with its reason noted;
2. the commands that arrive for the first time are handled together (`messaging.handle_batch`):
   their message ids claimed and their inbox rows read in one statement, each handler in a
   savepoint of its own, the inbox rows written in one insert, one commit. Their leases
   (orderhub/delivery.py) are written in one Redis round trip, `queued`; each handler marks its
   command busy while it runs and queued again once done (the refresher writes the marks), so the
   commands of a batch held open by a slow call are waiting their turn, not silent;
3. their replies are published on a channel in confirm mode and confirmed with one wait
   (orderhub/confirms.py); then each command is acked. A command whose reply the broker did not
   confirm goes back to its queue: its copy finds the stored reply in the inbox and sends it again;
4. a command that cannot go with the others runs alone, exactly as Celery would run its task
   (`run_command`, under Celery's tracer, so its retries, dead-lettering and signals are Celery's
   own): one redelivered (its consumer died holding it: the messages prefetched with it must not
   creep toward the delivery limit with it), one on a retry, a second copy of a message id in the
   same batch, one that does not read as a command. When a batch fails with anything but a
   rejection, its transaction is rolled back and its commands run alone, one by one: a failing
   command fails alone, with its own retries, and the others go through.
"""
import structlog
from celery.app.trace import trace_task
from celery.states import IGNORED, REJECTED, RETRY
from django.db import close_old_connections

from contracts import Command, MalformedMessage
from contracts.envelope import is_one_way
from orderhub import confirms, delivery, process_metrics
from orderhub.batches import BatchConsumer, Poison
from orderhub.topology import REPLY_TYPE
from workers import messaging

log = structlog.get_logger(__name__)


def _trace_headers(message) -> dict | None:
    headers = message.headers if isinstance(message.headers, dict) else {}
    found = {name: headers[name] for name in ("traceparent", "tracestate") if isinstance(headers.get(name), str)}
    return found or None


class CommandConsumer(BatchConsumer):
    label = "command"

    @property
    def domain(self):
        return self.queue_name.split(".", 1)[0]

    def handle(self, messages, connection=None):
        pending, ids = [], set()
        for message in messages:
            try:
                task_name, args, kwargs = self.read(message)
            except Poison as exc:
                self.poison(message, str(exc))
                continue
            command = self._command(task_name, args, kwargs)
            redelivered = (message.delivery_info or {}).get("redelivered")
            if command is None or redelivered or command.message_id in ids:
                self.run_batch(pending)
                pending, ids = [], set()
                self.run_alone(message, task_name, args, kwargs)
            else:
                ids.add(command.message_id)
                pending.append((message, task_name, args, kwargs, command))
        self.run_batch(pending)

    def read(self, message):
        """(task name, args, kwargs) of a task message; Poison with the reason otherwise."""
        return self.read_task(message, self.app.tasks)

    def _command(self, task_name, args, kwargs) -> Command | None:
        """The command, when it can go in a batch: a first attempt of this domain's command whose
        body reads. Anything else runs alone, where run_command sorts it out."""
        if kwargs.get("retried") or len(args) != 1 or not isinstance(args[0], dict):
            return None
        try:
            command = Command.from_dict(args[0])
        except MalformedMessage:  # (UnreadableVersion too): dead-lettered alone, with its reason
            return None
        if command.type != task_name or messaging.domain_of(command.type) != self.domain \
                or command.type not in messaging._HANDLERS:
            return None
        return command

    # --- a batch ----------------------------------------------------------------------------
    def run_batch(self, items):
        close_old_connections()  # (and a health check of the connection, once per batch)
        while items:
            head = items[:messaging.SAVEPOINTS_PER_TRANSACTION]
            commands = [item[-1] for item in head]
            # Each handler's span is a child of the publish that its message's headers carry, as
            # Celery's task run would be (orderhub/tracing.py).
            parents = {command.message_id: _trace_headers(message) for message, *_, command in head}
            try:
                # All queued at first: each handler marks its own command busy while it runs.
                with delivery.holding_many([item[-1].message_id for item in items], delivery.QUEUED,
                                           in_hand=self.queue_name):
                    handled = messaging.handle_batch(commands, parents=parents)
            except Exception as exc:
                log.warning("a batch of commands failed; handling them one at a time", commands=len(items),
                            error=f"{type(exc).__name__}: {exc}"[:300])
                close_old_connections()
                # Those waiting for their turn stay queued (the one running alone is busy: run_command's
                # own lease), so a slow one among them does not make the others look silent.
                with delivery.holding_many([item[-1].message_id for item in items], delivery.QUEUED,
                                           in_hand=self.queue_name):
                    for message, task_name, args, kwargs, _ in items:
                        self.run_alone(message, task_name, args, kwargs)
                return
            process_metrics.COMMAND_BATCH.labels(self.domain).observe(len(handled))
            self.reply_and_ack(items[:len(handled)], handled)
            items = items[len(handled):]

    def reply_and_ack(self, items, handled):
        batch = confirms.confirmed_batch()
        sent, broken = {}, None
        for (message, _, _, _, command), (reply, body) in zip(items, handled):
            process_metrics.COMMANDS.labels(command.type, reply.outcome if reply else "in_flight").inc()
            if reply is None or is_one_way(command.type) or broken is not None:
                continue
            try:
                batch.send(reply.message_id, REPLY_TYPE, body)
                sent[str(reply.message_id)] = command.message_id
            except confirms.BROKER_UNREACHABLE as exc:
                broken = exc
        confirmed, refused = batch.wait()
        for message_id, why in refused:
            log.warning("reply not confirmed; the command goes back to its queue", message_id=message_id, why=why)
        answered = {str(sent[str(message_id)]) for message_id in confirmed if str(message_id) in sent}
        delivery.answered_many(answered)
        for (message, _, _, _, command), (reply, _) in zip(items, handled):
            if reply is not None and not is_one_way(command.type) and str(command.message_id) not in answered:
                # The reply is durable in the inbox: the redelivered copy sends it again (the lease
                # says so meanwhile, as for a retry: the participant will answer).
                delivery.retrying(command.message_id, 0)
                message.reject(requeue=True)
            else:
                message.ack()

    # --- one command alone, as Celery runs a task ---------------------------------------------
    def run_alone(self, message, task_name, args, kwargs):
        task = self.app.tasks[task_name]
        headers = dict(message.headers)
        info, properties = message.delivery_info or {}, message.properties or {}
        request = headers | {
            "delivery_info": {"exchange": info.get("exchange"), "routing_key": info.get("routing_key"),
                              "priority": properties.get("priority"), "redelivered": info.get("redelivered")},
            "reply_to": properties.get("reply_to"), "correlation_id": properties.get("correlation_id"),
            "hostname": self.hostname, "is_eager": False,
        }
        traced = trace_task(task, headers["id"], args, kwargs, request, hostname=self.hostname, app=self.app)
        outcome = traced[1]  # Celery's TraceInfo: None when the task returned
        if outcome is None or outcome.state in (RETRY, IGNORED):
            message.ack()  # (a retry is a new message, published by task.retry)
        elif outcome.state == REJECTED:
            message.reject(requeue=bool(getattr(outcome.retval, "requeue", False)))
        else:  # a failure: to the dead-letter queue, as task_acks_on_failure=False says
            message.reject(requeue=False)
