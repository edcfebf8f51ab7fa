"""A circuit breaker around the payment provider (pybreaker), shared by every payments worker
through Redis.

Closed, calls go through. It opens on the share of charges whose calls time out, not on a run of
timeouts: when, over the last PROVIDER_CIRCUIT_WINDOW_SECONDS, at least PROVIDER_CIRCUIT_MIN_CALLS
distinct charges (an authorization's idempotency key, a capture's or void's charge) were called and
at least PROVIDER_CIRCUIT_FAILURE_RATE of them timed out with no success since (so a few charges
whose calls always fail, retried again and again, do not take the provider for down, among many
that succeed nor on their own). Open, for PROVIDER_CIRCUIT_RESET_SECONDS every call fails at once
with ProviderUnavailable, and the command is held by RabbitMQ until the circuit lets a trial
through, instead of hammering a provider that is down. Held on a budget of its own
(workers/messaging.py, DependencyUnavailable): an outage does not use up the step's retries, nor a
compensation's. Then one call goes through (half-open): a success closes the circuit, a timeout
opens it again. (pybreaker keeps the time it opened to the whole second, so an open period may be
up to a second shorter.)

The trial goes to a charge whose last call did not time out. One that keeps timing out on its own
(a void the provider cannot do) would fail every trial and keep the circuit open for good, holding
every other command with it; so it waits TRIAL_GRACE_SECONDS for another charge to make the trial,
and is then called on its own account: its timeout is its own, spends its own tries and leaves the
circuit as it is; its success closes it (_called_on_its_own_account).

Only the provider's timeouts count: its refusals are answers, and our own database's errors are
ours. With Redis unreachable the circuit reads as closed (the provider is called, as without a
breaker).

Its state is in /health/ and in the metrics (orderhub_circuit_state, orderhub_circuit_rejected_total).
PROVIDER_CIRCUIT_MIN_CALLS=0 turns it off."""
import contextvars
import random
import sys
import time
from datetime import datetime, timezone

import pybreaker
import redis
from django.conf import settings
from prometheus_client import Counter

from workers.messaging import DependencyUnavailable, hold_instead

NAME = "payments_provider"
STATES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}
REJECTED = Counter("orderhub_circuit_rejected", "Calls the open circuit failed at once, by circuit", ["circuit"])


class ProviderUnavailable(DependencyUnavailable):
    """The provider's circuit is open: the command is held until it lets a trial through."""


# One client (its connection pool) and one storage per Redis URL, kept: building them for each
# provider call opened new connections every time. (redis-py's pool reconnects after a fork.)
_clients: dict[str, redis.Redis] = {}
_storages: dict[str, pybreaker.CircuitRedisStorage] = {}


def _redis():
    client = _clients.get(settings.REDIS_URL)
    if client is None:
        client = _clients[settings.REDIS_URL] = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT, socket_connect_timeout=settings.REDIS_TIMEOUT)
    return client


def _storage():
    storage = _storages.get(settings.REDIS_URL)
    if storage is None:
        storage = _storages[settings.REDIS_URL] = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, _redis(), namespace=f"orderhub:{NAME}")
    return storage


def _enabled() -> bool:
    return settings.PROVIDER_CIRCUIT_MIN_CALLS > 0


_subject = contextvars.ContextVar("circuit_subject", default=None)


class FailureRate(pybreaker.CircuitBreakerListener):
    """Counts the charges called and the charges whose calls timed out, in one-second sets in Redis
    (shared by every payments worker), and opens the circuit when, over the window, enough distinct
    charges were called and enough of them are failing. A charge is counted once however often it
    is retried, and one that succeeded in the window is not failing: a handful of charges that
    always time out (a void that never goes through), retried over and over while little else
    calls the provider, is not an outage. pybreaker's own count of failures in a row is set out of
    reach (fail_max), so this is what opens a closed circuit."""

    KINDS = ("called", "failed", "ok")

    def _keys(self, kind, now):
        return [f"orderhub:{NAME}:{kind}:{second}"
                for second in range(now - int(settings.PROVIDER_CIRCUIT_WINDOW_SECONDS) + 1, now + 1)]

    def _count(self, outcome: str, *, tally: bool = True) -> tuple[int, int] | None:
        """Add this call (outcome "failed" or "ok"); return (charges called, charges failing) in the
        window (None without `tally`: a success opens nothing, so it need not read the window)."""
        charge = _subject.get()
        subject = charge or f"call:{random.random()}"  # a call with no charge counts on its own
        now, ttl = int(time.time()), int(settings.PROVIDER_CIRCUIT_WINDOW_SECONDS) + 2
        pipe = _redis().pipeline()
        for kind in ("called", outcome):
            key = f"orderhub:{NAME}:{kind}:{now}"
            pipe.sadd(key, subject)
            pipe.expire(key, ttl)
        if charge and outcome == "failed":
            pipe.set(_failing_key(charge), now, nx=True, ex=FAILING_MEMORY_SECONDS)
        elif charge:
            pipe.delete(_failing_key(charge))
        if not tally:
            pipe.execute()
            return None
        return self._tally(pipe, now)

    def window(self) -> tuple[int, int]:
        """(charges called, charges failing) in the window now, counting nothing."""
        return self._tally(_redis().pipeline(), int(time.time()))

    def _tally(self, pipe, now) -> tuple[int, int]:
        for kind in self.KINDS:
            pipe.sunion(self._keys(kind, now))
        *_, called, failed, ok = pipe.execute()
        return len(called), len(failed - ok)

    def success(self, cb):
        try:
            self._count("ok", tally=False)
        except redis.RedisError:  # a hint lost; the call itself went through
            pass

    def failure(self, cb, exc):
        try:
            called, failing = self._count("failed")
        except redis.RedisError:
            return
        if cb.current_state == pybreaker.STATE_CLOSED and called >= settings.PROVIDER_CIRCUIT_MIN_CALLS and \
                failing >= settings.PROVIDER_CIRCUIT_FAILURE_RATE * called:
            cb.open()
            # As pybreaker does when its own threshold trips: this call fails as the circuit's.
            raise pybreaker.CircuitBreakerError(f"{failing} of {called} charges timed out in the last "
                                                f"{settings.PROVIDER_CIRCUIT_WINDOW_SECONDS:g} s; circuit opened")

    def state_change(self, cb, old_state, new_state):
        if new_state is not None and new_state.name == pybreaker.STATE_CLOSED:
            self.forget()  # a closed circuit starts counting afresh (a trial succeeded, or an operator closed it)

    def forget(self):
        try:
            now = int(time.time())
            _redis().delete(*(key for kind in self.KINDS for key in self._keys(kind, now)))
        except redis.RedisError:
            pass


_breaker: pybreaker.CircuitBreaker | None = None


def breaker() -> pybreaker.CircuitBreaker:
    global _breaker
    if _breaker is None:
        from workers.payments.provider import ProviderTimeout

        _breaker = pybreaker.CircuitBreaker(
            fail_max=sys.maxsize, reset_timeout=settings.PROVIDER_CIRCUIT_RESET_SECONDS, state_storage=_storage(),
            exclude=[lambda exc: not isinstance(exc, ProviderTimeout)], listeners=[FailureRate()], name=NAME)
    return _breaker


def guarded(call, *args, **kwargs):
    """`call(*args, **kwargs)` through the circuit (straight, while the breaker is off)."""
    if not _enabled():
        return call(*args, **kwargs)
    charge = str(kwargs.get("idempotency_key") or kwargs.get("ref") or "") or None
    token = _subject.set(charge)
    try:
        due = _trial_due_for()
        if due is not None and charge is not None and _failing(charge):
            return _called_on_its_own_account(call, due, *args, **kwargs)
        return breaker().call(call, *args, **kwargs)
    except pybreaker.CircuitBreakerError as exc:
        REJECTED.labels(NAME).inc()
        raise ProviderUnavailable(f"the payment provider's circuit is open ({exc})", retry_after=_until_trial()) \
            from None
    finally:
        _subject.reset(token)


# How long a charge that has been timing out waits, once the open circuit's trial is due, for a
# charge that has not to make the trial.
TRIAL_GRACE_SECONDS = 5.0
# How long a charge is remembered as timing out (a success forgets it at once).
FAILING_MEMORY_SECONDS = 3 * 3600


def _failing_key(charge: str) -> str:
    return f"orderhub:{NAME}:failing:{charge}"


def _failing(charge: str) -> bool:
    """Whether this charge's last call to the provider timed out."""
    try:
        return bool(_redis().exists(_failing_key(charge)))
    except redis.RedisError:
        return False


def _called_on_its_own_account(call, due: float, *args, **kwargs):
    """The open circuit's trial is due, and this charge's last call timed out. Its failure now
    would say nothing of the provider: a void the provider cannot do (tok_void_broken) fails
    whether the provider is up or down, and as the trial it would open the circuit again and
    again, holding every other command with it. So it leaves the trial to a charge with no
    failures for TRIAL_GRACE_SECONDS; if none comes, it is called on its own account: a success
    closes the circuit (the provider is back), a timeout is its own (it spends one of its own
    tries, and is not held for the circuit once they are spent) and leaves the circuit as it is."""
    from workers.payments.provider import ProviderTimeout

    if due < TRIAL_GRACE_SECONDS:
        REJECTED.labels(NAME).inc()
        raise ProviderUnavailable(
            "the payment provider's circuit is half-open: its trial is left to a charge that has not been timing out",
            retry_after=TRIAL_GRACE_SECONDS - due + random.uniform(0, 1.0))
    try:
        result = call(*args, **kwargs)
    except ProviderTimeout as exc:
        exc.own_failure = True
        raise
    breaker().close()
    try:
        _redis().delete(_failing_key(_subject.get()))
    except redis.RedisError:
        pass
    return result


# Charges failing together, besides a rate, that make a charge whose own tries are spent wait for
# the circuit rather than fail: one charge that always times out (tok_timeout) is not an outage.
SUSPECT_CHARGES = 3


@hold_instead
def wait_for_the_circuit(exc, counts) -> ProviderUnavailable | None:
    """Asked when a command's own tries are spent on provider timeouts (workers/messaging.py). The
    first charges of an outage spend their tries before the circuit has seen enough of them to
    open; failing them would fail orders for the outage. So the command is held instead:
    - while the circuit is open (or half-open), until its trial, as any command it refuses;
    - once, for a window, when the charges called in the window are failing at the circuit's
      rate and at least SUSPECT_CHARGES of them are: the circuit decides meanwhile. Open, it holds
      the command on; still closed, the next try's timeout ends it, as it always did."""
    from workers.payments.provider import ProviderTimeout

    if not _enabled() or not isinstance(exc, ProviderTimeout) or getattr(exc, "own_failure", False):
        return None  # a charge called on its own account (above): its failure is its own
    try:
        current = state()
        if current in (pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN):
            return ProviderUnavailable(f"the payment provider's circuit is {current}", retry_after=_until_trial())
        if counts.get("held"):
            return None
        called, failing = FailureRate().window()
    except redis.RedisError:
        return None
    if failing >= SUSPECT_CHARGES and failing >= settings.PROVIDER_CIRCUIT_FAILURE_RATE * called:
        return ProviderUnavailable(
            f"{failing} of {called} charges are timing out; held {settings.PROVIDER_CIRCUIT_WINDOW_SECONDS:g} s "
            "for the circuit to decide", retry_after=settings.PROVIDER_CIRCUIT_WINDOW_SECONDS + random.uniform(0, 1.0))
    return None


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
    if not _enabled():
        return "off"
    current = _storage().state
    if current == pybreaker.STATE_OPEN and _trial_due_for() is not None:
        return pybreaker.STATE_HALF_OPEN
    return current


def _trial_due_for() -> float | None:
    """Seconds since the circuit's trial fell due (open past its reset timeout, or half-open);
    None while it is closed, or open within its reset timeout."""
    try:
        storage = _storage()
        if storage.state == pybreaker.STATE_CLOSED:
            return None
        opened = storage.opened_at
    except redis.RedisError:
        return None
    if opened is None:
        return None
    due = (datetime.now(timezone.utc) - opened).total_seconds() - settings.PROVIDER_CIRCUIT_RESET_SECONDS
    return due if due >= 0 else None


def reset():
    """Close the circuit and forget the calls counted so far (tests, and an operator sure the
    provider is back)."""
    breaker().close()
    FailureRate().forget()
