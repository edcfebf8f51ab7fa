"""Counters kept in Redis for what is dropped or set aside on purpose (parked dead letters,
malformed ticks), so an operator can see how many; they outlive the queues being drained.
A count is a courtesy: failing to keep one never stops the work it counts."""
import structlog
from django.core.cache import cache

log = structlog.get_logger(__name__)


def count(key: str):
    try:
        cache.incr(key)
    except ValueError:  # the first one
        cache.set(key, 1, None)
    except Exception as exc:
        log.warning("could not count", key=key, error=repr(exc))


def read(key: str) -> int:
    try:
        return int(cache.get(key) or 0)
    except Exception:
        return 0
