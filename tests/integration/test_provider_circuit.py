"""The payment provider's circuit breaker through a real payments worker: the provider goes down
(the sandbox's outage switch), the circuit opens on the rate of timeouts, the provider is then
spared while the commands are held, /health/ says so, and once the provider is back a trial call
closes the circuit: the held orders go on, every order ends, no hold is left open."""
import signal
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from orderhub.orders.models import Order
from tests.conftest import eventually
from tests.integration.conftest import LOG_DIR
from tests.integration.conftest import TestCluster as Processes
from tests.integration.helpers import api_client, place, product, wait_ended
from workers.payments import circuit, provider
from workers.payments.models import ProviderCharge

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]
RESET_SECONDS = 3.0  # pybreaker stores when it opened to the second: open 2 to 3 s each time


@pytest.fixture
def breaking_payments(live, settings):
    """The session's payments worker (its breaker on at 10 charges, as shipped) swapped for one
    whose circuit opens once 3 calls of the last 10 s were made and half of them timed out, for 3 s."""
    # This process reads the circuit too, with the worker's settings.
    settings.PROVIDER_CIRCUIT_MIN_CALLS, settings.PROVIDER_CIRCUIT_RESET_SECONDS = 3, RESET_SECONDS
    live.kill("payments-1", signal.SIGTERM)
    strict = Processes(live.env | {"ORDERHUB_PROVIDER_CIRCUIT_MIN_CALLS": "3",
                                   "ORDERHUB_PROVIDER_CIRCUIT_RESET_SECONDS": str(RESET_SECONDS)}, Path(LOG_DIR))
    try:
        strict.wait_ready([strict.start("payments", index=8)])
        # The window starts empty: the earlier tests' successful calls would otherwise count for
        # up to 10 s against the outage's timeouts (closing the circuit forgets them).
        circuit.reset()
        yield
    finally:
        provider.outage(False)
        strict.stop_all()
        circuit.reset()
        live.wait_ready([live.start("payments")])


def test_an_outage_opens_the_circuit_spares_the_provider_and_a_trial_closes_it(breaking_payments):
    sku = product(stock=20)
    client = api_client()
    provider.outage(True)
    during = [place(client, sku=sku, token="tok_ok")["id"] for _ in range(4)]
    eventually(lambda: circuit.state() == "open", timeout=30, message="the circuit to open")

    staff = Client()
    staff.force_login(get_user_model().objects.create(username="ops-circuit", is_staff=True))
    assert any("circuit is open" in w for w in staff.get("/health/").json()["warnings"])

    # Open: the orders' commands are retried, but the provider hears only the trial calls, one
    # per reset period at most.
    calls, since = provider.outage_calls(), time.monotonic()
    time.sleep(3 * RESET_SECONDS)
    spared = provider.outage_calls() - calls
    assert spared <= (time.monotonic() - since) / (RESET_SECONDS - 1) + 1, spared

    # The provider is back: a held authorization is the trial that closes the circuit, and the
    # orders held through the outage go on. (An order whose own attempts were the calls that timed
    # out may have used up its retries and failed, compensated; 6 or so timeouts over 4 orders
    # cannot fail them all.)
    provider.outage(False)
    ended = [wait_ended(order_id, timeout=60) for order_id in during]
    assert all(order.status in ("completed", "failed") for order in ended), [o.status for o in ended]
    assert any(order.status == "completed" for order in ended), [o.failure_reason for o in ended]
    failed = [f"{order.saga_id}:authorize" for order in ended if order.status == "failed"]
    assert not ProviderCharge.objects.filter(idempotency_key__in=failed, status="authorized").exists()
    assert circuit.state() == "closed"

    after = wait_ended(place(client, sku=sku, token="tok_ok")["id"], timeout=30)
    assert after.status == "completed"
    assert Order.objects.get(id=after.id).failure_reason is None
    assert circuit.state() == "closed"


def test_a_void_that_always_times_out_does_not_keep_the_circuit_open(breaking_payments):
    """What chaos found (seed 553667656): the circuit opened while tok_void_broken's void was being
    retried, and the void, the only payment left, became every trial. Each trial timed out and
    opened the circuit again, and the void was held for the circuit, never spending its own tries:
    its saga compensated for up to an hour. Now it leaves the trial to another charge for a few
    seconds, then fails on its own account: its tries run out, the order needs an operator as
    any tok_void_broken order does, and the next charge's trial closes the circuit."""
    sku = product(stock=20)
    client = api_client()
    broken = place(client, sku=sku, token="tok_void_broken")["id"]
    charge = eventually(lambda: ProviderCharge.objects.filter(token="tok_void_broken").first(), timeout=30,
                        message="the broken charge")
    eventually(lambda: circuit._failing(charge.ref), timeout=30, message="its void to time out once")

    provider.outage(True)  # two more charges time out: 3 of 3 failing, and the circuit opens
    try:
        for _ in range(3):
            try:
                provider.authorize(token="tok_ok", amount=Decimal("5.00"), idempotency_key=f"open-{uuid.uuid4()}")
            except provider.ProviderTimeout:
                continue
            except circuit.ProviderUnavailable:
                break
    finally:
        provider.outage(False)
    assert circuit.state() == "open"
    opened = time.monotonic()

    order = wait_ended(broken, timeout=90)
    assert order.status == "needs_attention", (order.status, order.failure_reason)
    print(f"\nthe broken void's order needed an operator {time.monotonic() - opened:.1f} s after the circuit opened")
    assert circuit.state() in ("half-open", "closed")  # nothing opened it again meanwhile
    after = place(client, sku=sku, token="tok_ok")["id"]  # the provider is up: a trial closes it
    assert wait_ended(after, timeout=60).status == "completed"
    assert circuit.state() == "closed"


def test_a_minute_long_outage_costs_the_provider_a_handful_of_calls_and_holds_the_orders(live):
    """The bar, with the breaker as shipped (the session's payments worker: 10 distinct charges,
    half failing, open 30 s), at two orders a second: every order placed through a 60 s outage
    completes once it is over, none failed for it. The first ones' tries are the calls that show
    the provider is down; spent before the circuit opens, they wait for it (held a window), and
    every order after is held by the open circuit. The provider hears those first calls, then
    only the trials."""
    sku = product(stock=200)
    client = api_client()
    circuit.reset()
    provider.outage(True)
    started, before = time.monotonic(), provider.outage_calls()
    try:
        during, opened_at = [], None
        while time.monotonic() - started < 50:  # two orders a second through the first 50 s
            during.append(place(client, sku=sku, token="tok_ok")["id"])
            if opened_at is None and circuit.state() == "open":
                opened_at, calls_to_open = len(during), provider.outage_calls() - before
            time.sleep(0.5)
        time.sleep(max(0.0, 60 - (time.monotonic() - started)))
        calls = provider.outage_calls() - before
    finally:
        provider.outage(False)
    assert opened_at is not None and opened_at <= 15, opened_at  # 10 distinct charges failing: ~5 s
    ended = [wait_ended(order_id, timeout=120) for order_id in during]
    not_completed = [(i, o.status, o.failure_reason) for i, o in enumerate(ended) if o.status != "completed"]
    print(f"\n60 s outage: {len(during)} orders placed during it, the circuit open from the {opened_at}th; "
          f"{len(ended) - len(not_completed)} completed; the provider called {calls} times, "
          f"{calls_to_open} before the circuit opened")
    assert not not_completed, not_completed
    # Before it opened: the first charges' tries (three at most each). Open: one trial per 30 s
    # (pybreaker keeps the time it opened to the second, and a trial may fall either side of it).
    assert calls_to_open <= 3 * opened_at, (calls_to_open, opened_at)
    assert calls - calls_to_open <= 60 / 30 + 1, (calls, calls_to_open)
