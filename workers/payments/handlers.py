"""Payments' command handlers: authorize, void, capture, talking to the sandbox provider."""
from decimal import Decimal

from django.utils import timezone

from contracts import Command
from workers.messaging import BusinessRejection, CleanupOwed, handles
from workers.payments import provider
from workers.payments.models import Payment, ProviderCharge

DB = "payments"


def _payment(cmd):
    return Payment.objects.using(DB).select_for_update().filter(saga_id=cmd.saga_id).first()


def _authorize_key(cmd):
    # The key is the saga's, not the message's: a retry with a new message id never charges twice.
    return f"{cmd.saga_id}:authorize"


def _release_hold(cmd) -> bool:
    """Void whatever the provider holds under this saga's authorization key. An authorization
    whose answer was lost (a timeout, our database gone) may have left one there without a
    Payment row here: the provider's ledger is the truth."""
    charge = provider.charge_for(_authorize_key(cmd))
    if charge is None or charge.status != ProviderCharge.Status.AUTHORIZED:
        return False
    provider.void(ref=charge.ref)
    return True


@handles("payments.authorize")
def authorize(cmd: Command):
    payment = _payment(cmd)
    if payment is not None:
        if payment.status == Payment.Status.TOMBSTONE:
            # Voided before it was authorized: a late copy must leave no hold behind.
            try:
                _release_hold(cmd)
            except provider.ProviderTimeout as exc:
                raise CleanupOwed(f"a hold for a compensated saga could not be voided yet: {exc}") from exc
            raise BusinessRejection("already_compensated", "the payment was voided before it was authorized")
        return cmd.succeed(payment_id=payment.pk)
    amount = Decimal(cmd.payload["total"])
    # Claim the saga's payment row before asking the provider. A void that arrives meanwhile waits
    # on this row's key until this transaction ends, then finds the authorization, or (after a
    # rollback) the provider's own record of any hold it made.
    payment = Payment.objects.using(DB).create(
        saga_id=cmd.saga_id, order_id=cmd.payload["order_id"], amount=amount, status=Payment.Status.PENDING,
    )
    outcome = provider.authorize(
        token=cmd.payload["payment_token"], amount=amount, idempotency_key=_authorize_key(cmd)
    )
    if not outcome.approved:
        raise BusinessRejection(outcome.decline_reason, "declined by the payment provider")
    payment.status = Payment.Status.AUTHORIZED
    payment.provider_ref = outcome.ref
    payment.save(using=DB, update_fields=["status", "provider_ref"])
    return cmd.succeed(payment_id=payment.pk)


@handles("payments.capture")
def capture(cmd: Command):
    payment = _payment(cmd)
    if payment is None or payment.status not in (Payment.Status.AUTHORIZED, Payment.Status.CAPTURED):
        raise BusinessRejection("not_authorized", "there is no authorized payment to capture")
    if payment.status == Payment.Status.AUTHORIZED:
        outcome = provider.capture(ref=payment.provider_ref)
        if not outcome.approved:
            raise BusinessRejection(outcome.decline_reason, "the provider declined the capture")
        payment.status = Payment.Status.CAPTURED
        payment.captured_at = timezone.now()
        payment.save(using=DB)
    return cmd.succeed(payment_id=payment.pk, captured=str(payment.amount))


@handles("payments.void")
def void(cmd: Command):
    payment = _payment(cmd)
    if payment is None:
        # No authorization committed here (it never ran, or its outcome was unknown): leave a
        # tombstone so a late one is refused, and release any hold the provider made for it.
        Payment.objects.using(DB).create(
            saga_id=cmd.saga_id, order_id=cmd.payload["order_id"], amount=Decimal("0.00"),
            status=Payment.Status.TOMBSTONE,
        )
        return cmd.succeed(voided=_release_hold(cmd))
    if payment.status == Payment.Status.AUTHORIZED:
        provider.void(ref=payment.provider_ref)
        payment.status = Payment.Status.VOIDED
        payment.voided_at = timezone.now()
        payment.save(using=DB)
        return cmd.succeed(voided=True)
    if payment.status == Payment.Status.CAPTURED:
        raise BusinessRejection("already_captured", "a captured payment cannot be voided")
    return cmd.succeed(voided=payment.status == Payment.Status.TOMBSTONE and _release_hold(cmd))
