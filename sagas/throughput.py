"""How fast sagas end, across every orchestrator: one Redis counter per second, kept a little
longer than the window admission control reads (orderhub/orders/admission.py).

A count is a courtesy: failing to keep or read one never stops a saga; a rate that cannot be read
is None, and admission then falls back to its in-flight limit alone."""
import time

import redis
import structlog
from django.conf import settings

log = structlog.get_logger(__name__)

WINDOW_SECONDS = 10
# A rate is never read off less than this: the first sagas of a burst end together, and their
# rate over one second would promise a drain the system cannot keep (the burst test's p99 did).
MIN_SPAN_SECONDS = 3.0
KEY = "orderhub:sagas_ended:{second}"
_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis:
    client = _clients.get(settings.REDIS_URL)
    if client is None:
        client = _clients[settings.REDIS_URL] = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT, socket_connect_timeout=settings.REDIS_TIMEOUT)
    return client


def note_ended(count: int = 1, *, now: float | None = None):
    """`count` sagas have just ended (called after their transaction commits)."""
    key = KEY.format(second=int(time.time() if now is None else now))
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.incrby(key, count)
        pipe.expire(key, WINDOW_SECONDS + 5)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not count an ended saga", error=repr(exc))


def drain_rate(*, now: float | None = None, window: int = WINDOW_SECONDS) -> float | None:
    """Sagas ended per second over the last `window` seconds, measured from the start of the first
    second in it that saw one end (so a burst's first seconds are not diluted by the idle ones
    before it), at least MIN_SPAN_SECONDS: 0.0 when none ended, None when Redis cannot be asked."""
    now = time.time() if now is None else now
    first_second = int(now) - window + 1
    try:
        values = _redis().mget([KEY.format(second=second) for second in range(first_second, int(now) + 1)])
    except redis.RedisError as exc:
        log.warning("could not read the drain rate", error=repr(exc))
        return None
    counts = [int(value or 0) for value in values]
    total = sum(counts)
    if not total:
        return 0.0
    started = first_second + next(index for index, count in enumerate(counts) if count)
    return total / max(now - started, MIN_SPAN_SECONDS)


def forget():
    """Drop what was counted (tests)."""
    try:
        keys = list(_redis().scan_iter(KEY.format(second="*")))
        if keys:
            _redis().delete(*keys)
    except redis.RedisError:
        pass
