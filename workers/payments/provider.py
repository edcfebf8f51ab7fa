"""A simulated payment provider with sandbox behaviour chosen by the payment token.

    tok_ok                  approves
    tok_declined            declines: payment_declined
    tok_insufficient_funds  declines: insufficient_funds
    anything else           declines: payment_declined (unknown token)

Every call carries an idempotency key: the same key twice returns the first answer, never a
second charge. The ledger is written on its own database connection ("provider"), so it keeps
what it did even when the caller's transaction rolls back, as a real provider would.
"""
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from workers.payments.models import ProviderCharge

DB = "provider"

DECLINES = {"tok_declined": "payment_declined", "tok_insufficient_funds": "insufficient_funds"}
APPROVES = {"tok_ok"}


class ProviderError(Exception):
    """The provider refused an operation on a charge (unknown ref, wrong state)."""


@dataclass(frozen=True)
class Authorization:
    ref: str
    approved: bool
    decline_reason: str = ""


def authorize(*, token: str, amount: Decimal, idempotency_key: str) -> Authorization:
    with transaction.atomic(using=DB):
        charge = ProviderCharge.objects.using(DB).select_for_update().filter(idempotency_key=idempotency_key).first()
        if charge is None:
            reason = "" if token in APPROVES else DECLINES.get(token, "payment_declined")
            charge = ProviderCharge.objects.using(DB).create(
                ref=f"ch_{uuid.uuid4().hex}",
                idempotency_key=idempotency_key,
                token=token,
                amount=amount,
                status=ProviderCharge.Status.DECLINED if reason else ProviderCharge.Status.AUTHORIZED,
                decline_reason=reason,
            )
    return Authorization(
        ref=charge.ref, approved=charge.status != ProviderCharge.Status.DECLINED, decline_reason=charge.decline_reason
    )


def capture(*, ref: str):
    _transition(ref, allowed_from={ProviderCharge.Status.AUTHORIZED}, to=ProviderCharge.Status.CAPTURED)


def void(*, ref: str):
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
