"""What differs between the sagas (the orchestrator's database) and each domain's records, and
releasing what no saga owns (docs/operations.md, Backup and restore).

After a restore the databases are not one instant (they were dumped one after the other), and
commands queued after the backup may still have had their effect in a domain. So a domain can
hold something for a saga the orchestrator does not know, or no longer needs it for:

- stock reserved for a saga that does not exist, or that compensated (releasable: the stock goes
  back to `available`), unless a shipment was created for it (reported only: the goods left);
- an authorization open at the provider for a saga that does not exist, or that compensated
  (releasable: voided at the provider);
- a captured payment or a created shipment for a saga that does not exist (reported only: money
  taken or a parcel on its way is a person's decision);
- a completed saga with no captured payment in payments (reported: that dump was older).

Sagas still running are never judged: they own what they hold until they end."""
import time
from collections import namedtuple

import structlog
from django.db import transaction
from django.db.models import F
from django.utils import timezone

log = structlog.get_logger(__name__)
Finding = namedtuple("Finding", "domain kind saga_id detail releasable")
GONE = "no such saga"


def _sagas(ids) -> dict:
    from sagas.models import SagaInstance

    ids = list({str(i) for i in ids})
    found = {}
    for start in range(0, len(ids), 2000):
        found |= {str(i): status for i, status in SagaInstance.objects.filter(id__in=ids[start:start + 2000])
                  .values_list("id", "status")}
    return found


def findings() -> list[Finding]:
    from workers.inventory.models import Reservation
    from workers.payments.models import Payment
    from workers.shipping.models import Shipment

    found = []
    reserved = list(Reservation.objects.using("inventory").filter(status="reserved").values_list("saga_id", "lines"))
    payments = list(Payment.objects.using("payments").filter(status__in=["authorized", "captured"])
                    .values_list("saga_id", "status", "amount"))
    shipped = list(Shipment.objects.using("shipping").filter(status="created").values_list("saga_id", flat=True))
    sagas = _sagas([s for s, _ in reserved] + [s for s, _, _ in payments] + shipped)
    shipped_ids = {str(s) for s in shipped}
    for saga_id, lines in reserved:
        status = sagas.get(str(saga_id), GONE)
        units = sum(line["quantity"] for line in lines)
        if status in (GONE, "compensated") and str(saga_id) in shipped_ids:
            found.append(Finding("inventory", "stock reserved and shipped", str(saga_id),
                                 f"{units} units; saga: {status} (the goods left: a person decides)", False))
        elif status in (GONE, "compensated"):
            found.append(Finding("inventory", "stock reserved", str(saga_id), f"{units} units; saga: {status}", True))
    for saga_id, status, amount in payments:
        saga = sagas.get(str(saga_id), GONE)
        if status == "authorized" and saga in (GONE, "compensated"):
            found.append(Finding("payments", "authorization open", str(saga_id), f"{amount}; saga: {saga}", True))
        elif status == "captured" and saga == GONE:
            found.append(Finding("payments", "payment captured", str(saga_id), f"{amount}; saga: {saga} "
                                 "(refund by hand, or restore the order)", False))
    for saga_id in shipped:
        if sagas.get(str(saga_id), GONE) == GONE:
            found.append(Finding("shipping", "shipment created", str(saga_id), f"saga: {GONE} (cancel by hand)",
                                 False))
    found += _completed_without_capture()
    return found


def _completed_without_capture() -> list[Finding]:
    from sagas.models import SagaInstance
    from workers.payments.models import Payment

    found = []
    completed = SagaInstance.objects.filter(status="completed", saga_type="place_order").values_list("id", flat=True)
    for start in range(0, 10**9, 2000):
        chunk = [str(i) for i in completed.order_by("id")[start:start + 2000]]
        if not chunk:
            break
        captured = {str(i) for i in Payment.objects.using("payments").filter(saga_id__in=chunk, status="captured")
                    .values_list("saga_id", flat=True)}
        found += [Finding("payments", "completed saga without a capture", saga_id,
                          "the payments database is older than the saga's end", False)
                  for saga_id in chunk if saga_id not in captured]
    return found


def release(found: list[Finding], attempts: int = 5) -> int:
    """Release what is releasable; returns how many. Each one is re-checked under a lock; a void
    the provider does not answer is tried `attempts` times, then left for the next run."""
    from workers.messaging import TransientError

    released = 0
    for finding in found:
        if not finding.releasable:
            continue
        act = _release_stock if finding.domain == "inventory" else _void_authorization
        for attempt in range(1, attempts + 1):
            try:
                released += act(finding.saga_id)
                break
            except TransientError as exc:
                log.warning("reconcile could not release yet", saga_id=finding.saga_id, attempt=attempt,
                            error=str(exc))
                time.sleep(min(2.0, 0.25 * 2 ** attempt))
    return released


def _release_stock(saga_id) -> int:
    from workers.inventory.models import Reservation, StockItem

    with transaction.atomic(using="inventory"):
        reservation = Reservation.objects.using("inventory").select_for_update().filter(
            saga_id=saga_id, status="reserved").first()
        if reservation is None or _sagas([saga_id]).get(saga_id, GONE) not in (GONE, "compensated"):
            return 0
        for line in sorted(reservation.lines, key=lambda line: line["sku"]):
            StockItem.objects.using("inventory").filter(sku=line["sku"]).update(
                available=F("available") + line["quantity"])
        reservation.status, reservation.released_at = "released", timezone.now()
        reservation.save(using="inventory")
    log.warning("reconcile released stock no saga owns", saga_id=saga_id)
    return 1


def _void_authorization(saga_id) -> int:
    from workers.payments import provider
    from workers.payments.models import Payment

    with transaction.atomic(using="payments"):
        payment = Payment.objects.using("payments").select_for_update().filter(
            saga_id=saga_id, status="authorized").first()
        if payment is None or _sagas([saga_id]).get(saga_id, GONE) not in (GONE, "compensated"):
            return 0
        provider.void(ref=payment.provider_ref)
        payment.status, payment.voided_at = "voided", timezone.now()
        payment.save(using="payments")
    log.warning("reconcile voided an authorization no saga owns", saga_id=saga_id)
    return 1
