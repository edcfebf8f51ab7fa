"""Admission control: a new order is refused at the door (HTTP 503 with Retry-After) when the wait
it would meet passes a target, rather than accepted and left to wait past what a client would call
healthy.

The wait is predicted by Little's law: an order accepted now finishes after about the work ahead of
it, `in flight / drain rate`, where in flight is the sagas running or compensating and the drain
rate is how many sagas ended per second over the last `ADMISSION_RATE_WINDOW` seconds (measured
from the first of them, so a system that just got busy is not taken for a slow one), or over the
window's last third if the drain was slower there. In a steady
state that quotient is the time an order spends in the system, measured; so the door holds the
accepted orders' accepted→ended time near `ADMISSION_TARGET_SECONDS` (5 s by default) whatever the
machine, the load or the mix of orders, where a fixed in-flight limit only bounded the backlog.

Three cases are told apart:

- **Too few in flight to predict** (under `ADMISSION_MIN_IN_FLIGHT`): admitted.
- **A slow drain**: sagas end, but the predicted wait passes the target. Refused, with
  `Retry-After` the time the drain needs to bring the prediction back under the target.
- **A stall**: nothing has ended in the window while sagas are in flight. That is an outage (the
  broker or a participant unreachable), not a load, and the prediction means nothing; the orders
  will finish once it heals, so they are accepted as before. `ADMISSION_MAX_IN_FLIGHT` still bounds
  what may pile up meanwhile, in every case.

Every refusal is counted (Redis, `admission:refused`) and logged; the prediction, the drain rate
and the target are metrics (`orderhub_admission_*`). Replays of an Idempotency-Key already used are
answered whatever the load: they start nothing."""
import math
from dataclasses import dataclass
from datetime import timedelta

import structlog
from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from orderhub import counters
from sagas.models import SagaInstance, SagaStatus

log = structlog.get_logger(__name__)

REFUSED_KEY = "admission:refused"
IN_FLIGHT = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
ENDED = tuple(status for status in SagaStatus.values if status not in IN_FLIGHT)
LONGEST_RETRY_AFTER = 60


class Overloaded(Exception):
    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Estimate:
    in_flight: int
    ended: int  # sagas ended within the window
    drain_rate: float  # sagas ended per second, 0.0 when none did
    predicted_wait: float | None  # seconds; None while too few are in flight to tell, or nothing drains

    @property
    def stalled(self) -> bool:
        return self.in_flight > 0 and self.ended == 0


def estimate(now=None) -> Estimate:
    """The sagas in flight and the drain rate, read in one statement.

    The drain rate is the lower of two: over the whole window, and over its last third (when the
    drain has been seen for longer than that third). The window smooths the lumps batches make (an
    orchestrator's batch ends many sagas at once); its last third sees a drain that slowed down
    (a loaded machine, a checkpoint, a participant taking longer) within seconds, before the orders
    accepted meanwhile wait past the target."""
    now = now or timezone.now()
    window = settings.ADMISSION_RATE_WINDOW
    since, recently = now - timedelta(seconds=window), now - timedelta(seconds=window / 3)
    ended = Q(status__in=ENDED, updated_at__gte=since, ended_at__gte=since)  # (status, updated_at) index
    counts = SagaInstance.objects.filter(Q(status__in=IN_FLIGHT) | ended).aggregate(
        in_flight=Count("id", filter=Q(status__in=IN_FLIGHT)),
        ended=Count("id", filter=ended),
        ended_recently=Count("id", filter=ended & Q(ended_at__gte=recently)),
        first=Min("ended_at", filter=ended))
    in_flight, count, recent = counts["in_flight"], counts["ended"], counts["ended_recently"]
    rate = 0.0
    if count:
        # Over the time the drain was seen, at least a second: a system that got busy two seconds
        # ago drains at what it did in those two, not at a tenth of it.
        span = (now - counts["first"]).total_seconds()
        rate = count / min(max(span, 1.0), window)
        if recent and span > window / 3:
            rate = min(rate, recent / (window / 3))
    predicted = None
    if rate and in_flight >= settings.ADMISSION_MIN_IN_FLIGHT:
        predicted = in_flight / rate
    return Estimate(in_flight=in_flight, ended=count, drain_rate=rate, predicted_wait=predicted)


def in_flight() -> int:
    return estimate().in_flight


def admit():
    """Raise Overloaded when no new saga may start now."""
    limit, target = settings.ADMISSION_MAX_IN_FLIGHT, settings.ADMISSION_TARGET_SECONDS
    if limit <= 0 and target <= 0:
        return
    now = estimate()
    if limit > 0 and now.in_flight >= limit:
        wait = _drain_time(now.in_flight - limit + 1, now) if now.drain_rate else settings.ADMISSION_RETRY_AFTER
        _refuse(f"{now.in_flight} orders are in progress (limit {limit}); try again in {wait} s", wait, now,
                why="in flight limit")
    if target > 0 and now.predicted_wait is not None and now.predicted_wait > target:
        wait = _drain_time(now.in_flight - target * now.drain_rate, now)
        _refuse(f"{now.in_flight} orders are in progress and about {now.drain_rate:.1f} finish a second: a new one "
                f"would wait about {now.predicted_wait:.0f} s (target {target:g} s); try again in {wait} s",
                wait, now, why="predicted wait")


def _drain_time(sagas, now: Estimate) -> int:
    """Whole seconds (1 to a minute) the measured drain takes to finish `sagas` more."""
    return min(max(math.ceil(sagas / now.drain_rate), 1), LONGEST_RETRY_AFTER)


def _refuse(message, wait, now: Estimate, why):
    counters.count(REFUSED_KEY)
    log.warning("order refused at the door", why=why, in_flight=now.in_flight,
                drain_rate=round(now.drain_rate, 2), predicted_wait=now.predicted_wait, retry_after=wait)
    raise Overloaded(message, wait)


def refused() -> int:
    return counters.read(REFUSED_KEY)
