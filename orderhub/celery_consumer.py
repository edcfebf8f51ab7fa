"""Celery's consumer, changed where it would lose a message or its reason.

- An undecodable message: Celery acks it (deleting it without trace); here it is rejected to the
  queue's dead-letter exchange instead.
- A message that is not a task, or names an unknown task: Celery rejects it; here the reason is
  noted first so the dead-letter archive can say why.
- After losing the broker, Celery retries the connection at 2, 4, 6, ... seconds (kombu's
  defaults), so a worker comes back up to ten seconds after a restarted RabbitMQ does, while
  deadlines run. Here it retries every half second, then at most every two seconds.
"""
import functools
import logging

from celery.worker.consumer import Consumer as CeleryConsumer

from orderhub.deadletters.reasons import message_key, note_reason

log = logging.getLogger(__name__)


def _note(message, reason):
    note_reason(message_key(headers=message.headers, properties=message.properties, body=message.body), reason)


RECONNECT = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT)
        return super().ensure_connected(conn)

    def on_decode_error(self, message, exc):
        log.error("undecodable message dead-lettered: %s (content_type=%s)", exc, message.content_type)
        _note(message, f"malformed: cannot decode the body ({message.content_type}): {exc}")
        message.reject(requeue=False)

    def on_unknown_message(self, body, message):
        _note(message, "malformed: not a task message (no task header)")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body, message, exc):
        _note(message, f"malformed: unknown task {message.headers.get('task')!r}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body, message, exc):
        _note(message, f"malformed: invalid task message: {exc}")
        super().on_invalid_task(body, message, exc)
