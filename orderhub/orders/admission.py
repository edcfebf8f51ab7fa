"""Admission control: a new order is refused at the door (HTTP 503 with Retry-After) when it would
wait longer than a client would call healthy, rather than accepted and left in a queue.

By Little's law an accepted order waits about `in flight / drain rate` (sagas running or
compensating, over sagas ending per second across every orchestrator, sagas/throughput.py). A new
order is refused when that prediction passes HEADROOM (70%) of ADMISSION_TARGET_SECONDS (5 s by
default), with a Retry-After of the time the backlog needs to drain back to it. The headroom is for
the spread: the target bounds the slowest accepted orders (the burst test holds their p99 to it),
and under a refusal storm the drain rate, measured over the last seconds, lags the one to come
(tests/integration/test_burst.py measured p50 5.1 s, p99 6.5 s with the prediction held to the
target itself). Below
ADMISSION_FREE_IN_FLIGHT sagas in flight an order is always admitted (a cold start has nothing to
measure yet); at or above it, with no saga ended in the last seconds, the system is not seen to
drain at all and the order is refused. With Redis out of reach (no rate to read) only the hard limit
ADMISSION_MAX_IN_FLIGHT applies, which holds whatever the prediction says. Every refusal is counted (Redis, `admission:refused`) and logged. Replays of an
Idempotency-Key already used are answered whatever the load: they start nothing."""
import math

import structlog
from django.conf import settings

from orderhub import counters
from sagas import throughput
from sagas.models import SagaInstance, SagaStatus

log = structlog.get_logger(__name__)

REFUSED_KEY = "admission:refused"
IN_FLIGHT = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
MAX_RETRY_AFTER = 30
HEADROOM = 0.7


class Overloaded(Exception):
    def __init__(self, why, retry_after):
        super().__init__(f"{why}; try again in {retry_after} s")
        self.retry_after = retry_after


def in_flight() -> int:
    return SagaInstance.objects.filter(status__in=IN_FLIGHT).count()


def predicted_wait(now_in_flight: int | None = None) -> float | None:
    """Seconds until a saga started now would be done, behind the ones ahead of it (Little's law):
    infinite when none has ended lately, None when the rate cannot be read."""
    now_in_flight = in_flight() if now_in_flight is None else now_in_flight
    rate = throughput.drain_rate()
    if rate is None:
        return None
    return (now_in_flight + 1) / rate if rate else math.inf


def admit():
    """Raise Overloaded when no new saga may start now."""
    limit, target = settings.ADMISSION_MAX_IN_FLIGHT, settings.ADMISSION_TARGET_SECONDS
    if limit <= 0 and target <= 0:
        return
    now = in_flight()
    if 0 < limit <= now:
        _refuse(f"{now} orders are in progress (limit {limit})", settings.ADMISSION_RETRY_AFTER, in_flight=now,
                limit=limit)
    if target > 0 and now >= settings.ADMISSION_FREE_IN_FLIGHT:
        wait = predicted_wait(now)
        if wait is not None and math.isinf(wait):
            _refuse(f"{now} orders are in progress and none has ended in the last "
                    f"{throughput.WINDOW_SECONDS} s", settings.ADMISSION_RETRY_AFTER, in_flight=now, target_s=target)
        if wait is not None and wait > HEADROOM * target:
            retry_after = min(MAX_RETRY_AFTER, max(1, math.ceil(wait - HEADROOM * target)))
            _refuse(f"{now} orders are in progress: a new one would wait about {wait:.1f} s "
                    f"(target {target:g} s)", retry_after, in_flight=now, predicted_wait_s=round(wait, 2),
                    target_s=target)


def _refuse(why, retry_after, **fields):
    counters.count(REFUSED_KEY)
    log.warning("order refused at the door", retry_after=retry_after, **fields)
    raise Overloaded(why, retry_after)


def refused() -> int:
    return counters.read(REFUSED_KEY)
