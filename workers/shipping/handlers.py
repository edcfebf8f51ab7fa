"""Shipping's command handlers: create a shipment, cancel it."""
import uuid

from django.utils import timezone

from contracts import Command
from workers.messaging import BusinessRejection, handles
from workers.shipping.models import Shipment

DB = "shipping"
# Countries the sandbox carrier does not deliver to.
UNSUPPORTED_COUNTRIES = {"AQ"}


@handles("shipping.create")
def create(cmd: Command):
    existing = Shipment.objects.using(DB).select_for_update().filter(saga_id=cmd.saga_id).first()
    if existing is not None:
        if existing.status == Shipment.Status.CREATED:
            return cmd.succeed(tracking_number=existing.tracking_number)
        raise BusinessRejection("already_compensated", "the shipment was cancelled before it was created")
    address = cmd.payload["shipping_address"]
    if str(address.get("country", "")).upper() in UNSUPPORTED_COUNTRIES:
        raise BusinessRejection("address_unsupported", f"no delivery to {address.get('country')}")
    shipment = Shipment.objects.using(DB).create(
        saga_id=cmd.saga_id,
        order_id=cmd.payload["order_id"],
        status=Shipment.Status.CREATED,
        address=address,
        tracking_number=f"OH{uuid.uuid4().hex[:12].upper()}",
    )
    return cmd.succeed(tracking_number=shipment.tracking_number)


@handles("shipping.cancel")
def cancel(cmd: Command):
    shipment = Shipment.objects.using(DB).select_for_update().filter(saga_id=cmd.saga_id).first()
    if shipment is None:
        Shipment.objects.using(DB).create(
            saga_id=cmd.saga_id, order_id=cmd.payload["order_id"], status=Shipment.Status.TOMBSTONE
        )
        return cmd.succeed(cancelled=False)
    if shipment.status == Shipment.Status.CREATED:
        shipment.status = Shipment.Status.CANCELLED
        shipment.cancelled_at = timezone.now()
        shipment.save(using=DB)
        return cmd.succeed(cancelled=True)
    return cmd.succeed(cancelled=False)
