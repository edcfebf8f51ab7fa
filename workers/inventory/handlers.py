"""Inventory's command handlers: reserve stock for a saga, release it."""
from django.db.models import F
from django.utils import timezone

from contracts import Command
from workers.inventory.models import Reservation, StockAdjustment, StockItem
from workers.messaging import BusinessRejection, handles

DB = "inventory"


def _lock_stock(skus):
    # Fixed order (by primary key) so two workers never deadlock.
    return {s.sku: s for s in StockItem.objects.using(DB).select_for_update().filter(sku__in=skus).order_by("sku")}


@handles("inventory.reserve")
def reserve(cmd: Command):
    existing = Reservation.objects.using(DB).select_for_update().filter(saga_id=cmd.saga_id).first()
    if existing is not None:
        if existing.status == Reservation.Status.RESERVED:
            return cmd.succeed(reservation_id=existing.pk)
        raise BusinessRejection("already_compensated", "the reservation was released before it was made")
    lines = {}
    for item in cmd.payload["items"]:
        lines[item["sku"]] = lines.get(item["sku"], 0) + item["quantity"]
    stock = _lock_stock(lines)
    short = sorted(sku for sku, quantity in lines.items() if sku not in stock or stock[sku].available < quantity)
    if short:
        raise BusinessRejection("out_of_stock", f"not enough stock for {', '.join(short)}")
    for sku, quantity in lines.items():
        StockItem.objects.using(DB).filter(sku=sku).update(available=F("available") - quantity)
    reservation = Reservation.objects.using(DB).create(
        saga_id=cmd.saga_id,
        order_id=cmd.payload["order_id"],
        status=Reservation.Status.RESERVED,
        lines=[{"sku": sku, "quantity": q} for sku, q in sorted(lines.items())],
    )
    return cmd.succeed(reservation_id=reservation.pk)


@handles("inventory.release")
def release(cmd: Command):
    reservation = Reservation.objects.using(DB).select_for_update().filter(saga_id=cmd.saga_id).first()
    if reservation is None:
        Reservation.objects.using(DB).create(
            saga_id=cmd.saga_id, order_id=cmd.payload["order_id"], status=Reservation.Status.TOMBSTONE
        )
        return cmd.succeed(released=False)
    if reservation.status != Reservation.Status.RESERVED:
        return cmd.succeed(released=False)
    _lock_stock([line["sku"] for line in reservation.lines])
    for line in reservation.lines:
        StockItem.objects.using(DB).filter(sku=line["sku"]).update(available=F("available") + line["quantity"])
    reservation.status = Reservation.Status.RELEASED
    reservation.released_at = timezone.now()
    reservation.save(using=DB)
    return cmd.succeed(released=True)


@handles("inventory.restock")
def restock(cmd: Command):
    """An operator's restock: add the quantity (a sku new to the inventory starts at zero) and
    record it. Once per message id, like every command (the inbox)."""
    sku, quantity = cmd.payload["sku"], cmd.payload["quantity"]
    StockItem.objects.using(DB).get_or_create(sku=sku, defaults={"available": 0})
    StockItem.objects.using(DB).filter(sku=sku).update(available=F("available") + quantity)
    available = StockItem.objects.using(DB).get(sku=sku).available
    StockAdjustment.objects.using(DB).create(message_id=cmd.message_id, sku=sku, quantity=quantity,
                                             reason=cmd.payload["reason"], operator=cmd.payload["operator"],
                                             available_after=available)
    return cmd.succeed(available=available)
