"""A simulated payment provider with sandbox behaviour chosen by the payment token.

    tok_ok                  approves
    tok_declined            declines: payment_declined
    tok_insufficient_funds  declines: insufficient_funds
    tok_flaky               times out twice (transient), then approves
    tok_slow                answers after ORDERHUB_SANDBOX_SLOW_SECONDS (longer than the step's deadline)
    tok_ambiguous           charges, then the answer is lost (a timeout) the first time
    tok_timeout             charges, then every answer is lost (a timeout): the outcome stays unknown
    tok_void_fails          approves; the capture is declined; the void times out 3 times, then works
    tok_void_broken         approves; the capture is declined; every void times out until an operator
                            lifts the fault (`manage.py sandbox lift tok_void_broken`)
    anything else           declines: payment_declined (unknown token)

A provider outage (`manage.py sandbox outage on|off`) times out every authorize, capture and void
until it is switched off; the circuit breaker (workers/payments/circuit.py) then stops calling.

The faults (every token above but tok_ok and the declines) act only while ORDERHUB_SANDBOX is on,
the local default. With it off (production's default) a fault token is an ordinary card: it
approves, and nothing times out, sleeps or is lost.

Every call carries an idempotency key: the same key twice returns the first answer, never a
second charge. The ledger is written on its own database connection ("provider"), so it keeps
what it did even when the caller's transaction rolls back, as a real provider would.
"""
import os
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F

from workers.messaging import TransientError
from workers.payments import circuit
from workers.payments.models import ProviderCharge, SandboxFault

DB = "provider"

DECLINES = {"tok_declined": "payment_declined", "tok_insufficient_funds": "insufficient_funds"}
APPROVES = {"tok_ok", "tok_flaky", "tok_slow", "tok_ambiguous", "tok_timeout", "tok_void_fails", "tok_void_broken"}
CAPTURE_DECLINED = {"tok_void_fails", "tok_void_broken"}
FLAKY_FAILURES = 2
VOID_FAILURES = 3


class ProviderError(Exception):
    """The provider refused an operation on a charge (unknown ref, wrong state): not transient."""


class ProviderTimeout(TransientError):
    """The provider did not answer in time; the operation may or may not have happened."""


@dataclass(frozen=True)
class Outcome:
    ref: str
    approved: bool
    decline_reason: str = ""


def fault(token: str, *names: str) -> bool:
    """Whether `token` is one of the fault tokens `names` and the sandbox acts on them."""
    return token in names and settings.SANDBOX


def slow_seconds() -> float:
    return float(os.environ.get("ORDERHUB_SANDBOX_SLOW_SECONDS", "18"))


def _failures_so_far(key) -> int:
    """Count one more try of `key` (committed at once, on the provider's connection)."""
    with transaction.atomic(using=DB):
        fault, _ = SandboxFault.objects.using(DB).select_for_update().get_or_create(key=key)
        SandboxFault.objects.using(DB).filter(pk=fault.pk).update(failures=F("failures") + 1)
        return fault.failures


def fault_lifted(name) -> bool:
    return SandboxFault.objects.using(DB).filter(key=f"lift:{name}", lifted=True).exists()


def fault_lift(name, *, lifted=True):
    with transaction.atomic(using=DB):
        SandboxFault.objects.using(DB).update_or_create(key=f"lift:{name}", defaults={"lifted": lifted})


OUTAGE = "outage"


def outage(on: bool):
    fault_lift(OUTAGE, lifted=on)


def outage_calls() -> int:
    """How many calls the provider has had during outages (each one timed out)."""
    fault = SandboxFault.objects.using(DB).filter(key=f"{OUTAGE}:calls").first()
    return fault.failures if fault else 0


def _down():
    if settings.SANDBOX and fault_lifted(OUTAGE):
        _failures_so_far(f"{OUTAGE}:calls")
        raise ProviderTimeout("the provider is down (sandbox outage)")


def authorize(**kwargs) -> Outcome:
    return circuit.guarded(_authorize, **kwargs)


def capture(**kwargs) -> Outcome:
    return circuit.guarded(_capture, **kwargs)


def void(**kwargs):
    return circuit.guarded(_void, **kwargs)


def _authorize(*, token: str, amount: Decimal, idempotency_key: str) -> Outcome:
    _down()
    existing = ProviderCharge.objects.using(DB).filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        if fault(existing.token, "tok_timeout"):
            raise ProviderTimeout("the provider's answer was lost again (tok_timeout)")
        return _outcome(existing)
    if fault(token, "tok_flaky") and _failures_so_far(f"{idempotency_key}:flaky") < FLAKY_FAILURES:
        raise ProviderTimeout("the provider timed out (tok_flaky)")
    if fault(token, "tok_slow"):
        time.sleep(slow_seconds())
    with transaction.atomic(using=DB):
        charge = ProviderCharge.objects.using(DB).select_for_update().filter(idempotency_key=idempotency_key).first()
        created = charge is None
        if created:
            reason = "" if token in APPROVES else DECLINES.get(token, "payment_declined")
            charge = ProviderCharge.objects.using(DB).create(
                ref=f"ch_{uuid.uuid4().hex}", idempotency_key=idempotency_key, token=token, amount=amount,
                status=ProviderCharge.Status.DECLINED if reason else ProviderCharge.Status.AUTHORIZED,
                decline_reason=reason,
            )
    if created and fault(token, "tok_ambiguous", "tok_timeout"):
        # The charge is made and committed; the answer never reaches the caller.
        raise ProviderTimeout(f"the provider's answer was lost after charging ({token})")
    return _outcome(charge)


def _outcome(charge):
    return Outcome(ref=charge.ref, approved=charge.status != ProviderCharge.Status.DECLINED,
                   decline_reason=charge.decline_reason)


def charge_for(idempotency_key):
    return ProviderCharge.objects.using(DB).filter(idempotency_key=idempotency_key).first()


def _capture(*, ref: str) -> Outcome:
    _down()
    charge = ProviderCharge.objects.using(DB).get(ref=ref)
    if fault(charge.token, *CAPTURE_DECLINED) and charge.status == ProviderCharge.Status.AUTHORIZED:
        return Outcome(ref=ref, approved=False, decline_reason="payment_declined")
    _transition(ref, allowed_from={ProviderCharge.Status.AUTHORIZED}, to=ProviderCharge.Status.CAPTURED)
    return Outcome(ref=ref, approved=True)


def _void(*, ref: str):
    _down()
    charge = ProviderCharge.objects.using(DB).get(ref=ref)
    if charge.status == ProviderCharge.Status.AUTHORIZED:
        if fault(charge.token, "tok_void_fails") and _failures_so_far(f"{ref}:void") < VOID_FAILURES:
            raise ProviderTimeout("the provider timed out voiding (tok_void_fails)")
        if fault(charge.token, "tok_void_broken") and not fault_lifted("tok_void_broken"):
            raise ProviderTimeout("the provider cannot void right now (tok_void_broken)")
    _transition(ref, allowed_from={ProviderCharge.Status.AUTHORIZED}, to=ProviderCharge.Status.VOIDED)


def _transition(ref, *, allowed_from, to):
    with transaction.atomic(using=DB):
        charge = ProviderCharge.objects.using(DB).select_for_update().filter(ref=ref).first()
        if charge is None:
            raise ProviderError(f"unknown charge {ref}")
        if charge.status == to:
            return  # the same request again: idempotent
        if charge.status not in allowed_from:
            raise ProviderError(f"charge {ref} is {charge.status}, cannot become {to}")
        charge.status = to
        charge.save(using=DB)
