"""Admission control: a new order is refused at the door (HTTP 503 with Retry-After) while too many
sagas are in flight, rather than accepted and left to wait past what a client would call healthy.

In flight means running or compensating. By Little's law the wait an accepted order can meet is
about `in flight / throughput`, so the limit bounds it: at the default 300 and the 2-core figures
of `make bench`, well under the shortest deadline a queued command can be held to. Every refusal
is counted (Redis, `admission:refused`) and logged. Replays of an Idempotency-Key already used are
answered whatever the load: they start nothing."""
import structlog
from django.conf import settings

from orderhub import counters
from sagas.models import SagaInstance, SagaStatus

log = structlog.get_logger(__name__)

REFUSED_KEY = "admission:refused"
IN_FLIGHT = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)


class Overloaded(Exception):
    def __init__(self, in_flight, limit, retry_after):
        super().__init__(f"{in_flight} orders are in progress (limit {limit}); try again in {retry_after} s")
        self.retry_after = retry_after


def in_flight() -> int:
    return SagaInstance.objects.filter(status__in=IN_FLIGHT).count()


def admit():
    """Raise Overloaded when no new saga may start now."""
    limit = settings.ADMISSION_MAX_IN_FLIGHT
    if limit <= 0:
        return
    now = in_flight()
    if now >= limit:
        counters.count(REFUSED_KEY)
        log.warning("order refused at the door", in_flight=now, limit=limit)
        raise Overloaded(now, limit, settings.ADMISSION_RETRY_AFTER)


def refused() -> int:
    return counters.read(REFUSED_KEY)
