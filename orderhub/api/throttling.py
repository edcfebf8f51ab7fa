"""Throttling that fails open: with Redis unreachable, requests are let through (an outage of the
cache must not become an outage of the API), with a warning at most every WARN_EVERY seconds and
a counter (`orderhub_throttle_fail_open_total`, read by the metrics endpoint)."""
import time

import structlog
from prometheus_client import Counter
from rest_framework import throttling

log = structlog.get_logger(__name__)

FAIL_OPEN = Counter("orderhub_throttle_fail_open", "Requests let through because the throttle's cache was unreachable")
WARN_EVERY = 10.0
_last_warning = 0.0


class UserRateThrottle(throttling.UserRateThrottle):
    """Reads (GET, HEAD) and writes are counted apart, each at its own rate (settings: `reads`,
    `user`): a client polling its order does not use up what it may write, nor the reverse."""

    def allow_request(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            self.scope = "reads"
            self.rate = self.get_rate()
            self.num_requests, self.duration = self.parse_rate(self.rate)
        return self._allow(request, view)

    def get_cache_key(self, request, view):
        key = super().get_cache_key(request, view)
        return None if key is None else f"{key}:{self.scope}"

    def _allow(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # redis-py's ConnectionError, TimeoutError, ...
            FAIL_OPEN.inc()
            global _last_warning
            if time.monotonic() - _last_warning > WARN_EVERY:
                _last_warning = time.monotonic()
                log.warning("throttling fails open, the cache is unreachable", error=repr(exc))
            return True
