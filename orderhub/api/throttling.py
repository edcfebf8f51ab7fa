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
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # redis-py's ConnectionError, TimeoutError, ...
            FAIL_OPEN.inc()
            global _last_warning
            if time.monotonic() - _last_warning > WARN_EVERY:
                _last_warning = time.monotonic()
                log.warning("throttling fails open, the cache is unreachable", error=repr(exc))
            return True
