"""A circuit breaker around the payment provider (pybreaker), shared by every payments worker
through Redis.

Closed, calls go through. After PROVIDER_CIRCUIT_FAIL_MAX timeouts in a row it opens: for
PROVIDER_CIRCUIT_RESET_SECONDS every call fails at once with ProviderUnavailable, and the command
is held by RabbitMQ until the circuit lets a trial through, instead of hammering a provider that is
down. Held on a budget of its own (workers/messaging.py, DependencyUnavailable): an outage does
not use up the step's retries, nor a compensation's. Then one call goes through (half-open): a success closes the circuit, a
timeout opens it again. (pybreaker keeps the time it opened to the whole second, so an open
period may be up to a second shorter.) Only the provider's timeouts count: its refusals are answers, and our own
database's errors are ours. With Redis unreachable the circuit reads as closed (the provider is
called, as without a breaker).

Its state is in /health/ and in the metrics (orderhub_circuit_state, orderhub_circuit_rejected_total)."""
import random
from datetime import datetime, timezone

import pybreaker
import redis
from django.conf import settings
from prometheus_client import Counter

from workers.messaging import DependencyUnavailable

NAME = "payments_provider"
STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}
REJECTED = Counter("orderhub_circuit_rejected", "Calls the open circuit failed at once, by circuit", ["circuit"])


class ProviderUnavailable(DependencyUnavailable):
    """The provider's circuit is open: the command is held until it lets a trial through."""


def _redis():
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT,
                                socket_connect_timeout=settings.REDIS_TIMEOUT)


def _storage():
    return pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, _redis(), namespace=f"orderhub:{NAME}")


_breaker: pybreaker.CircuitBreaker | None = None


def breaker() -> pybreaker.CircuitBreaker:
    global _breaker
    if _breaker is None:
        from workers.payments.provider import ProviderTimeout

        _breaker = pybreaker.CircuitBreaker(
            fail_max=settings.PROVIDER_CIRCUIT_FAIL_MAX, reset_timeout=settings.PROVIDER_CIRCUIT_RESET_SECONDS,
            state_storage=_storage(), exclude=[lambda exc: not isinstance(exc, ProviderTimeout)], name=NAME)
    return _breaker


def guarded(call, *args, **kwargs):
    """`call(*args, **kwargs)` through the circuit (straight, while the breaker is off)."""
    if settings.PROVIDER_CIRCUIT_FAIL_MAX <= 0:
        return call(*args, **kwargs)
    try:
        return breaker().call(call, *args, **kwargs)
    except pybreaker.CircuitBreakerError as exc:
        REJECTED.labels(NAME).inc()
        raise ProviderUnavailable(f"the payment provider's circuit is open ({exc})", retry_after=_until_trial()) \
            from None


def _until_trial() -> float:
    """Seconds until the open circuit lets a trial call through (at least one, jittered so the
    commands held meanwhile do not all come back in the same instant)."""
    opened = _storage().opened_at
    left = settings.PROVIDER_CIRCUIT_RESET_SECONDS
    if opened is not None:
        left -= (datetime.now(timezone.utc) - opened).total_seconds()
    return max(1.0, left) + random.uniform(0, 1.0)


def state() -> str:
    """off (the breaker is not used), or closed, open or half-open, as every payments worker sees
    it (health, metrics). pybreaker moves on only when called: an open circuit past its reset
    timeout is reported half-open (the next call is the trial), not open for as long as no
    payment comes."""
    if settings.PROVIDER_CIRCUIT_FAIL_MAX <= 0:
        return "off"
    storage = _storage()
    current = storage.state
    if current == pybreaker.STATE_OPEN:
        opened = storage.opened_at
        if opened is not None and (datetime.now(timezone.utc) - opened).total_seconds() >= \
                settings.PROVIDER_CIRCUIT_RESET_SECONDS:
            return pybreaker.STATE_HALF_OPEN
    return current


def reset():
    """Close the circuit (tests, and an operator sure the provider is back)."""
    breaker().close()
