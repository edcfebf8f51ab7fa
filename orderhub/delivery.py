"""Which commands a worker has taken: a mark in Redis per message id, set as a worker starts on a
command. The deadline sweep reads it to tell a command still waiting in its participant's queue
(our backlog: the deadline is put off) from one the participant holds and is silent about (the
deadline stands). A mark is a hint: the deadline is put off only when Redis positively says no worker has
the command and the queue holds a backlog; when Redis cannot say, the deadline stands, as it did
before marks. (Marks lost with a restarted Redis put deadlines off at most MAX_DEFERRALS times.)"""
import logging

from django.core.cache import cache

log = logging.getLogger(__name__)

# Longer than any step waits for an answer, resends and deferrals included.
MARK_SECONDS = 6 * 3600


def _key(message_id) -> str:
    return f"started:{message_id}"


def mark_started(message_id):
    try:
        cache.set(_key(message_id), 1, MARK_SECONDS)
    except Exception as exc:
        log.warning("could not mark the command as taken message_id=%s: %r", message_id, exc)


def not_taken(message_id) -> bool:
    """True only when Redis says no worker has taken this command yet; False when one has, or
    when Redis cannot be asked."""
    try:
        return cache.get(_key(message_id)) is None
    except Exception as exc:
        log.warning("could not tell whether the command was taken message_id=%s: %r", message_id, exc)
        return False
