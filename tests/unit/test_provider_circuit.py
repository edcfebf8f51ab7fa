"""The payment provider's circuit breaker (workers/payments/circuit.py) with the real Redis and the
sandbox's outage switch: it opens when enough of the recent calls time out and then stops calling the provider,
fails fast as a transient error, and closes after a successful trial once the provider is back."""
import time
import uuid
from decimal import Decimal

import pytest

from workers.messaging import DependencyUnavailable, TransientError
from workers.payments import circuit, provider

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture
def fresh_circuit(monkeypatch, settings):
    """A circuit of this test's own (the integration suite's workers share Redis with this session)."""
    monkeypatch.setattr(circuit, "NAME", f"test-{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(circuit, "_breaker", None)
    # Opens when, in the last 10 s, at least 3 calls were made and half of them timed out.
    settings.PROVIDER_CIRCUIT_MIN_CALLS = 3
    settings.PROVIDER_CIRCUIT_FAILURE_RATE = 0.5
    settings.PROVIDER_CIRCUIT_WINDOW_SECONDS = 10.0
    # pybreaker keeps the time it opened in Redis to the whole second: an open period is between
    # one second short of this and this.
    settings.PROVIDER_CIRCUIT_RESET_SECONDS = 2.0
    yield
    circuit.reset()


def authorize():
    return provider.authorize(token="tok_ok", amount=Decimal("5.00"), idempotency_key=f"circuit-{uuid.uuid4()}")


def test_the_circuit_opens_stops_calling_and_closes_again_after_a_good_trial(fresh_circuit):
    provider.outage(True)
    before = provider.outage_calls()
    for _ in range(2):
        with pytest.raises(provider.ProviderTimeout):
            authorize()
    with pytest.raises(circuit.ProviderUnavailable):  # the third timeout opens it
        authorize()
    assert circuit.state() == "open" and provider.outage_calls() == before + 3

    for _ in range(10):  # open: nobody calls the provider, every payments worker fails fast
        with pytest.raises(circuit.ProviderUnavailable) as failed:
            authorize()
        assert isinstance(failed.value, DependencyUnavailable)  # held until the trial, not failed
        assert 1.0 <= failed.value.retry_after <= 3.0
    assert provider.outage_calls() == before + 3

    time.sleep(2.1)  # past the reset timeout: the next call is a trial
    with pytest.raises(circuit.ProviderUnavailable):
        authorize()  # the provider is still down: open again after one call
    assert provider.outage_calls() == before + 4 and circuit.state() == "open"

    provider.outage(False)
    time.sleep(2.1)
    assert authorize().approved  # the trial succeeds
    assert circuit.state() == "closed" and authorize().approved


def test_one_charge_that_always_times_out_among_many_good_calls_does_not_open_it(fresh_circuit, monkeypatch):
    """What a count of timeouts in a row got wrong: the chaos suite's tok_void_broken, whose void
    always times out, took the provider for down. The rate sees it among the rest."""
    broken = provider.authorize(token="tok_void_broken", amount=Decimal("5.00"), idempotency_key=f"vb-{uuid.uuid4()}")
    for _ in range(7):
        assert authorize().approved
    for _ in range(4):  # four timeouts in a row, but 4 of 12 calls
        with pytest.raises(provider.ProviderTimeout):
            provider.void(ref=broken.ref)
    assert circuit.state() == "closed"

    provider.outage(True)  # then the provider really goes: the rate climbs past half, and it opens
    with pytest.raises(circuit.ProviderUnavailable):
        for _ in range(8):
            try:
                authorize()
            except provider.ProviderTimeout:
                continue
    assert circuit.state() == "open"
    provider.outage(False)


def test_a_charge_retried_over_and_over_counts_once(fresh_circuit):
    """What a rate of calls got wrong: at the end of a chaos run, the calls left were mostly the
    retries of tok_void_broken's voids, and it opened with the provider up. One failing charge is
    one, however often it is tried, and fewer charges than PROVIDER_CIRCUIT_MIN_CALLS are no outage."""
    broken = provider.authorize(token="tok_void_broken", amount=Decimal("5.00"), idempotency_key=f"vb-{uuid.uuid4()}")
    for _ in range(10):
        with pytest.raises(provider.ProviderTimeout):
            provider.void(ref=broken.ref)
    assert circuit.state() == "closed"


def test_a_charge_that_timed_out_then_went_through_is_not_failing(fresh_circuit, monkeypatch):
    provider.outage(True)
    keys = [f"flaky-{uuid.uuid4()}" for _ in range(2)]
    for key in keys:
        with pytest.raises(provider.ProviderTimeout):
            provider.authorize(token="tok_ok", amount=Decimal("5.00"), idempotency_key=key)
    provider.outage(False)
    for key in keys:  # both retried successfully: 0 of 2 failing
        assert provider.authorize(token="tok_ok", amount=Decimal("5.00"), idempotency_key=key).approved
    provider.outage(True)
    with pytest.raises(provider.ProviderTimeout):  # 1 of 3 failing: below half
        authorize()
    assert circuit.state() == "closed"
    provider.outage(False)


def test_the_providers_refusals_do_not_open_it(fresh_circuit):
    voided = authorize()
    provider.void(ref=voided.ref)
    for _ in range(5):
        with pytest.raises(provider.ProviderError):  # a voided charge cannot be captured: an answer
            provider.capture(ref=voided.ref)
        assert not provider.authorize(token="tok_declined", amount=Decimal("5.00"),
                                      idempotency_key=f"declined-{uuid.uuid4()}").approved
    assert circuit.state() == "closed"


def test_an_open_circuit_past_its_timeout_reads_half_open_before_anyone_calls(fresh_circuit):
    provider.outage(True)
    for _ in range(3):
        with pytest.raises(TransientError):
            authorize()
    assert circuit.state() == "open"
    time.sleep(2.1)
    assert circuit.state() == "half-open"  # nobody called meanwhile: the next call is the trial
    provider.outage(False)
    assert authorize().approved and circuit.state() == "closed"


def test_a_command_the_open_circuit_refused_is_held_until_the_trial_on_a_budget_of_its_own(monkeypatch):
    """Neither the step's retries nor a compensation's are used up by an outage: the command comes
    back when the circuit lets a trial through."""
    from celery.canvas import Signature

    from contracts import Command
    from orderhub.celery import app
    from workers import messaging
    from workers.payments import tasks as payments_tasks  # noqa: F401  (registers the tasks)

    sent = []
    monkeypatch.setattr(Signature, "apply_async", lambda self, *a, **kw: sent.append((self.kwargs, self.options)))
    void = Command(type="payments.void", saga_id=str(uuid.uuid4()), step="authorize",
                   payload={"order_id": str(uuid.uuid4())})
    task = app.tasks["payments.void"]
    task.push_request(id=void.message_id, args=[void.to_dict()], kwargs={}, delivery_info={}, retries=0,
                      called_directly=False)
    try:
        with pytest.raises(Exception) as raised:
            messaging._retry_or_give_up(task, void, circuit.ProviderUnavailable("open", retry_after=7.5),
                                        {"transient": 2, "infrastructure": 0, "held": 0})
    finally:
        task.pop_request()
    assert type(raised.value).__name__ == "Retry"
    [(kwargs, options)] = sent
    assert kwargs["retried"] == {"transient": 2, "infrastructure": 0, "held": 1}  # the step's 2 untouched
    assert options["countdown"] == 7.5


def give_up_or_hold(monkeypatch, exc, counts, type_="payments.authorize"):
    """What a payments worker does with `exc` once the step's own tries are spent: ("held",
    retried counts, countdown), or ("answered", the reply)."""
    from celery.canvas import Signature

    from contracts import Command
    from orderhub.celery import app
    from workers import messaging
    from workers.payments import tasks as payments_tasks  # noqa: F401  (registers the tasks)

    sent = []
    monkeypatch.setattr(Signature, "apply_async", lambda self, *a, **kw: sent.append((self.kwargs, self.options)))
    command = Command(type=type_, saga_id=str(uuid.uuid4()), step="authorize",
                      payload={"order_id": str(uuid.uuid4()), "total": "5.00", "payment_token": "tok_ok"})
    task = app.tasks[type_]
    task.push_request(id=command.message_id, args=[command.to_dict()], kwargs={}, delivery_info={}, retries=0,
                      called_directly=False)
    try:
        reply = messaging._retry_or_give_up(task, command, exc, counts)
    except Exception as raised:
        assert type(raised).__name__ == "Retry", raised
        [(kwargs, options)] = sent
        return "held", kwargs["retried"], options["countdown"]
    finally:
        task.pop_request()
    assert not sent
    return "answered", reply


SPENT = {"transient": 2, "infrastructure": 0, "held": 0}  # place_order's authorize: 3 tries


def test_the_first_charges_of_an_outage_wait_for_the_circuit_instead_of_failing(fresh_circuit, monkeypatch, settings):
    """The first charges of an outage spend their tries before the circuit has seen enough of them
    to open (10 charges as shipped). Failing them would fail orders for the outage: they are held
    for one window while the circuit decides."""
    settings.PROVIDER_CIRCUIT_MIN_CALLS = 10
    provider.outage(True)
    for _ in range(3):  # three charges failing, all that were called: not open yet
        with pytest.raises(provider.ProviderTimeout):
            authorize()
    assert circuit.state() == "closed"
    timeout = provider.ProviderTimeout("the provider is down")
    what, retried, countdown = give_up_or_hold(monkeypatch, timeout, SPENT)
    assert what == "held" and retried == SPENT | {"held": 1}  # on the held budget, the step's untouched
    assert 10.0 <= countdown <= 11.0  # a window
    # Held once already, and the circuit did not open: the next timeout ends it, as before.
    what, reply = give_up_or_hold(monkeypatch, timeout, SPENT | {"held": 1})
    assert what == "answered" and reply.unknown and reply.reason == "retries_exhausted"
    # Once the circuit is open, a command whose tries are spent is held until the trial, however
    # often it was held before.
    with pytest.raises(circuit.ProviderUnavailable):
        for _ in range(10):
            try:
                authorize()
            except provider.ProviderTimeout:
                continue
    assert circuit.state() == "open"
    what, retried, countdown = give_up_or_hold(monkeypatch, timeout, SPENT | {"held": 5})
    assert what == "held" and retried["held"] == 6 and 1.0 <= countdown <= 3.0
    provider.outage(False)


def test_one_charge_that_always_times_out_still_ends_unknown(fresh_circuit, monkeypatch, settings):
    """tok_timeout's answer is always lost: a charge or two failing alone is no outage, so the
    step's tries end it (unknown outcome, compensated by the saga), and among good calls too."""
    settings.PROVIDER_CIRCUIT_MIN_CALLS = 10
    for _ in range(2):
        key = f"timeout-{uuid.uuid4()}"
        for _ in range(3):  # charged, then every answer lost
            with pytest.raises(provider.ProviderTimeout):
                provider.authorize(token="tok_timeout", amount=Decimal("5.00"), idempotency_key=key)
    what, reply = give_up_or_hold(monkeypatch, provider.ProviderTimeout("lost"), SPENT)
    assert what == "answered" and reply.reason == "retries_exhausted"
    for _ in range(4):  # a third failing charge, but among good ones: 3 of 7, under half
        assert authorize().approved
    provider.outage(True)
    with pytest.raises(provider.ProviderTimeout):
        authorize()
    provider.outage(False)
    what, reply = give_up_or_hold(monkeypatch, provider.ProviderTimeout("lost"), SPENT)
    assert what == "answered" and reply.reason == "retries_exhausted"


def open_with(*timeouts):
    """Open the (3-charge) circuit on an outage, `timeouts` (callables) among its calls."""
    provider.outage(True)
    try:
        with pytest.raises(circuit.ProviderUnavailable):
            for call in (*timeouts, authorize, authorize, authorize):
                try:
                    call()
                except provider.ProviderTimeout:
                    continue
    finally:
        provider.outage(False)
    assert circuit.state() == "open"


def test_a_charge_that_keeps_timing_out_leaves_the_trial_to_another(fresh_circuit, monkeypatch):
    """What chaos found (seed 553667656): the circuit opened at the end of a run, and the trial was
    always tok_void_broken's void, whose every call times out. Each trial opened it again, and the
    void itself was held for the circuit rather than spending its tries: an hour of a saga
    compensating, and every other payment held with it. A charge whose last call timed out is not
    the trial while another can be; failing on its own account, it leaves the circuit as it is."""
    monkeypatch.setattr(circuit, "TRIAL_GRACE_SECONDS", 1.5)
    broken = provider.authorize(token="tok_void_broken", amount=Decimal("5.00"), idempotency_key=f"vb-{uuid.uuid4()}")
    open_with(lambda: provider.void(ref=broken.ref))
    time.sleep(2.1)
    assert circuit.state() == "half-open"

    with pytest.raises(circuit.ProviderUnavailable) as waited:  # the trial is left to another charge
        provider.void(ref=broken.ref)
    assert 0.0 < waited.value.retry_after <= 2.5
    assert circuit.state() == "half-open"

    time.sleep(1.5)  # nobody else came: it is called on its own account, and its timeout is its own
    with pytest.raises(provider.ProviderTimeout) as failed:
        provider.void(ref=broken.ref)
    assert failed.value.own_failure and circuit.state() == "half-open"
    for _ in range(3):  # the circuit did not open again for it: it did not count
        with pytest.raises(provider.ProviderTimeout):
            provider.void(ref=broken.ref)
    assert circuit.state() == "half-open"

    assert authorize().approved  # a charge with no failures makes the trial, and closes it
    assert circuit.state() == "closed"


def test_a_failing_charge_that_goes_through_on_its_own_account_closes_the_circuit(fresh_circuit, monkeypatch):
    monkeypatch.setattr(circuit, "TRIAL_GRACE_SECONDS", 0.5)
    key = f"late-{uuid.uuid4()}"

    def retried():
        return provider.authorize(token="tok_ok", amount=Decimal("5.00"), idempotency_key=key)

    open_with(retried)
    time.sleep(2.6)  # past the reset timeout and the grace
    assert retried().approved  # the provider is back: this charge is the proof
    assert circuit.state() == "closed"
    assert not circuit._failing(key)


def test_a_command_whose_own_call_failed_on_its_own_account_is_not_held(fresh_circuit, monkeypatch):
    """Its tries spent, a charge that failed on its own account ends (unknown, or a compensation
    dead-lettered for an operator) rather than waiting for a circuit its own failures say nothing of."""
    open_with()
    timeout = provider.ProviderTimeout("the provider cannot void right now (tok_void_broken)")
    what, *_ = give_up_or_hold(monkeypatch, timeout, SPENT)
    assert what == "held"  # any other timeout, with the circuit open: held until the trial
    timeout.own_failure = True
    what, reply = give_up_or_hold(monkeypatch, timeout, SPENT)
    assert what == "answered" and reply.reason == "retries_exhausted"
