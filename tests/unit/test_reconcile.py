"""Reconcile (orderhub/reconcile.py): what a domain holds for a saga the orchestrator does not
know, or that compensated, is found, and released where releasable, once; a running saga's
holdings are never touched. And a reply for a saga this database does not know is dead-lettered
with that reason."""
import io
import uuid
from decimal import Decimal

import pytest
from celery.exceptions import Reject
from django.core.management import call_command

from orderhub import reconcile
from sagas import tasks
from sagas.models import SagaInstance
from tests.unit.sagas.saga_harness import given, place_order_context
from sagas.definitions import PLACE_ORDER
from workers.inventory.models import Reservation, StockItem
from workers.payments import provider
from workers.payments.models import Payment
from workers.shipping.models import Shipment

pytestmark = pytest.mark.django_db(databases="__all__")


def reserve(saga_id, quantity=3):
    StockItem.objects.get_or_create(sku="REC-1", defaults={"available": 10})
    return Reservation.objects.create(saga_id=saga_id, order_id=uuid.uuid4(), status="reserved",
                                      lines=[{"sku": "REC-1", "quantity": quantity}])


def authorized(saga_id, status="authorized"):
    outcome = provider.authorize(token="tok_ok", amount=Decimal("5.00"), idempotency_key=f"{saga_id}:authorize")
    return Payment.objects.create(saga_id=saga_id, order_id=uuid.uuid4(), amount=Decimal("5.00"), status=status,
                                  provider_ref=outcome.ref)


def test_what_no_saga_owns_is_found_and_released_once():
    gone = str(uuid.uuid4())
    reserve(gone)
    authorized(gone)
    running = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    reserve(str(running.saga_id))

    found = reconcile.findings()
    assert {(f.domain, f.kind, f.saga_id, f.releasable) for f in found} == {
        ("inventory", "stock reserved", gone, True), ("payments", "authorization open", gone, True)}

    assert reconcile.release(found) == 2
    assert reconcile.release(found) == 0  # each re-checked: released once
    assert reconcile.findings() == []
    assert StockItem.objects.get(sku="REC-1").available == 13  # the running saga's 3 stay reserved
    assert Payment.objects.get(saga_id=gone).status == "voided"
    assert Reservation.objects.get(saga_id=running.saga_id).status == "reserved"


def test_a_compensated_sagas_leftovers_are_releasable_and_money_taken_is_only_reported():
    compensated = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    SagaInstance.objects.filter(id=compensated.saga_id).update(status="compensated")
    reserve(str(compensated.saga_id))
    taken = str(uuid.uuid4())
    authorized(taken, status="captured")
    Shipment.objects.create(saga_id=taken, order_id=uuid.uuid4(), status="created", address={}, tracking_number="T1")

    found = {(f.domain, f.kind): f for f in reconcile.findings()}
    assert found[("inventory", "stock reserved")].releasable
    assert not found[("payments", "payment captured")].releasable
    assert not found[("shipping", "shipment created")].releasable

    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("reconcile", "--release", stdout=out)
    assert "released 1" in out.getvalue() and "2 findings (0 releasable)" in out.getvalue()


def test_a_completed_saga_without_a_capture_is_reported():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    SagaInstance.objects.filter(id=scenario.saga_id).update(status="completed")
    [finding] = reconcile.findings()
    assert (finding.kind, finding.saga_id) == ("completed saga without a capture", str(scenario.saga_id))


def test_nothing_to_reconcile_says_so_and_exits_zero():
    out = io.StringIO()
    call_command("reconcile", stdout=out)
    assert "0 findings" in out.getvalue()


def test_a_reply_for_a_saga_this_database_does_not_know_is_dead_lettered_with_the_reason():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    reply = scenario.command.succeed(reservation_id=1)
    SagaInstance.objects.filter(id=scenario.saga_id).delete()
    with pytest.raises(Reject, match=f"unknown saga: no saga {scenario.saga_id} in this database"):
        tasks.receive_reply.run(reply.to_dict())


def test_stock_reserved_and_shipped_for_a_saga_that_does_not_exist_is_only_reported():
    gone = str(uuid.uuid4())
    reserve(gone)
    Shipment.objects.create(saga_id=gone, order_id=uuid.uuid4(), status="created", address={}, tracking_number="T2")
    found = {f.kind: f for f in reconcile.findings()}
    assert not found["stock reserved and shipped"].releasable and "stock reserved" not in found
    assert reconcile.release(list(found.values())) == 0
    assert StockItem.objects.get(sku="REC-1").available == 10
