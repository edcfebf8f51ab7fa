"""The console's actions (orderhub/console/actions.py): each needs a reason, makes one audit row per
real change, and does nothing (and says so) the second time."""
import io
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from contracts import Command
from orderhub.console import actions
from orderhub.console.models import AuditEntry
from orderhub.deadletters.models import DeadLetter
from orderhub.orders.models import Order, Product
from sagas import engine
from sagas.definitions import PLACE_ORDER
from sagas.models import OutboxMessage, SagaInstance
from tests.unit.sagas.saga_harness import given, place_order_context, sweep
from workers import messaging
from workers.inventory import handlers  # noqa: F401  (registers the inventory handlers)
from workers.inventory.models import StockAdjustment, StockItem

pytestmark = pytest.mark.django_db(databases="__all__")

ADA = actions.Actor("ada", "admin")


def parked_order(status="compensation_failed"):
    """An order whose saga is parked for an operator (a needs_attention order)."""
    client = get_user_model().objects.create(username=f"client-{uuid.uuid4().hex[:6]}")
    context = place_order_context()
    order = Order.objects.create(id=context["order_id"], client=client, total=Decimal("37.50"),
                                 payment_token="tok_void_broken", shipping_address=context["shipping_address"])
    scenario = given(PLACE_ORDER, context).expect_command("inventory.reserve").reply_success()
    if status == "compensation_failed":
        scenario.expect_command("payments.authorize").reply_failure("payment_declined") \
            .expect_command("inventory.release").reply_unknown("retries_exhausted")
    else:  # a capture that never succeeds: stuck past the pivot
        scenario.succeed("payments.authorize", "shipping.create")
        capture = PLACE_ORDER.steps[3]
        for attempt in range(1, capture.max_attempts + 1):
            scenario.expect_command("payments.capture", attempt=attempt).reply_unknown("handler_error", "KeyError")
            if attempt < capture.max_attempts:
                sweep(now=scenario.step("capture").deadline_at + timedelta(seconds=1))
    scenario.expect_status(status)
    Order.objects.filter(id=order.id).update(saga_id=scenario.saga_id)
    order.refresh_from_db()
    assert order.status == "needs_attention"
    return order, scenario


def audit_rows(**filters):
    return list(AuditEntry.objects.filter(**filters))


# --- reasons and bad input ------------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["", "   ", None, "x" * (actions.MAX_REASON + 1)])
def test_every_action_needs_a_reason_and_changes_nothing_without_one(reason):
    order, scenario = parked_order()
    with pytest.raises(actions.ActionRefused, match="reason"):
        actions.retry_saga(ADA, scenario.saga_id, reason)
    with pytest.raises(actions.ActionRefused, match="reason"):
        actions.resolve_saga(ADA, scenario.saga_id, reason)
    assert scenario.saga.status == "compensation_failed"
    assert not audit_rows()


def test_an_unknown_saga_is_refused_by_name():
    with pytest.raises(actions.ActionRefused, match="no saga"):
        actions.retry_saga(ADA, uuid.uuid4(), "looked at it")
    with pytest.raises(actions.ActionRefused, match="no saga"):
        actions.resolve_saga(ADA, "not-a-uuid", "looked at it")
    assert not audit_rows()


# --- retry ----------------------------------------------------------------------------------------
def test_retrying_a_failed_compensation_sends_it_again_once_and_is_audited_once():
    order, scenario = parked_order()
    first = actions.retry_saga(ADA, scenario.saga_id, "provider fixed")
    again = actions.retry_saga(ADA, scenario.saga_id, "provider fixed")

    assert first.changed and "compensating" in first.message
    assert not again.changed and again.message.startswith("nothing to do")
    assert scenario.saga.status == "compensating"
    assert OutboxMessage.objects.filter(saga_id=scenario.saga_id, message_type="inventory.release").count() == 2
    [entry] = audit_rows(target_id=str(scenario.saga_id))
    assert (entry.operator, entry.via, entry.action, entry.reason) == ("ada", "admin", "retry_saga", "provider fixed")


@pytest.mark.parametrize("parked", ["compensation_failed", "stuck"])
def test_a_retried_order_is_pending_until_its_saga_ends_again(parked):
    order, scenario = parked_order(parked)
    actions.retry_saga(ADA, scenario.saga_id, "provider fixed")
    order.refresh_from_db()
    assert (order.status, order.failure_reason) == ("pending", None)

    if parked == "compensation_failed":
        scenario.expect_command("inventory.release", attempt=2).reply_success() \
            .expect_status("compensated", failure_reason="payment_declined")
        expected = ("failed", "payment_declined")
    else:
        attempt = PLACE_ORDER.steps[3].max_attempts + 1  # a fresh budget; the count goes on
        scenario.expect_command("payments.capture", attempt=attempt).reply_success().succeed("notifications.send") \
            .expect_status("completed")
        expected = ("completed", None)
    order.refresh_from_db()
    assert (order.status, order.failure_reason) == expected


# --- resolve --------------------------------------------------------------------------------------
@pytest.mark.parametrize("parked", ["compensation_failed", "stuck"])
def test_resolving_a_needs_attention_order_closes_it_keeping_its_reason(parked):
    order, scenario = parked_order(parked)
    reason_before = order.failure_reason

    first = actions.resolve_saga(ADA, scenario.saga_id, "refunded by hand, ticket 42")
    again = actions.resolve_saga(ADA, scenario.saga_id, "refunded by hand, ticket 42")

    order.refresh_from_db()
    assert first.changed and not again.changed and "already resolved" in again.message
    assert (order.status, order.failure_reason) == ("resolved", reason_before)
    assert scenario.saga.status == "resolved" and scenario.saga.is_final
    assert len(audit_rows(action="resolve_saga")) == 1


def test_only_a_parked_saga_can_be_resolved():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    with pytest.raises(actions.ActionRefused, match="only a stuck or compensation_failed"):
        actions.resolve_saga(ADA, scenario.saga_id, "tidying up")
    assert scenario.saga.status == "running" and not audit_rows()


def test_a_late_success_does_not_reopen_a_resolved_saga():
    """A compensation resent and never answered until the saga is resolved: its success then is
    recorded as late and changes nothing (unresolved, it would resume the saga: late replies)."""
    order, scenario = parked_order()
    actions.retry_saga(ADA, scenario.saga_id, "try once more")
    release = scenario.expect_command("inventory.release", attempt=2).command
    for _ in range(20):  # silence: its deadlines pass until the compensation is declared failed
        if scenario.saga.status == "compensation_failed":
            break
        sweep(now=scenario.step("reserve_stock").deadline_at + timedelta(seconds=1))
    assert scenario.saga.status == "compensation_failed"
    actions.resolve_saga(ADA, scenario.saga_id, "released by hand")

    assert scenario.apply(release_success(release)) == "late"
    assert scenario.saga.status == "resolved"
    order.refresh_from_db()
    assert order.status == "resolved"


def release_success(command):
    from contracts import Reply

    return Reply.to(command, "succeeded")


# --- cancel ---------------------------------------------------------------------------------------
def test_cancelling_before_the_pivot_asks_once():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    first = actions.cancel_saga(ADA, scenario.saga_id, "customer phoned")
    again = actions.cancel_saga(ADA, scenario.saga_id, "customer phoned")
    assert first.changed and not again.changed
    assert scenario.saga.cancel_requested
    assert len(audit_rows(action="cancel_saga")) == 1


def test_cancelling_past_the_pivot_is_refused():
    scenario = (given(PLACE_ORDER, place_order_context())
                .expect_command("inventory.reserve").reply_success()
                .expect_command("payments.authorize").reply_success()
                .expect_command("shipping.create").reply_success()
                .expect_command("payments.capture"))
    if not engine.REGISTRY["place_order"].past_pivot(scenario.saga.current_step):
        pytest.skip("capture is not past the pivot in this definition")
    with pytest.raises(actions.ActionRefused, match="cannot be cancelled"):
        actions.cancel_saga(ADA, scenario.saga_id, "customer phoned")
    assert not scenario.saga.cancel_requested and not audit_rows()


# --- dead letters ---------------------------------------------------------------------------------
def letter(queue="payments.commands", message_type="payments.void", reason="retries exhausted: void"):
    return DeadLetter.objects.create(message_key=str(uuid.uuid4()), queue=queue, message_type=message_type,
                                     reason=reason, body="[]", headers={"id": "x"}, properties={})


def test_the_dry_run_counts_what_a_filtered_replay_would_take_by_queue():
    letter(), letter(), letter(queue="inventory.commands", message_type="inventory.release")
    letter(reason="malformed: no payload")
    DeadLetter.objects.filter(id=letter().id).update(status="replayed")

    everything = actions.replay_preview(actions.ReplaySelection())
    voids = actions.replay_preview(actions.ReplaySelection(message_type="payments.void", reason_contains="exhausted"))

    assert everything.matching == 4 and everything.by_queue == {"inventory.commands": 1, "payments.commands": 3}
    assert voids.matching == 2
    assert DeadLetter.objects.filter(status="archived").count() == 4 and not audit_rows()


def test_replaying_publishes_each_archived_letter_once_at_the_rate_and_limit_given():
    letters = [letter(queue="orderhub_test_replay_nowhere") for _ in range(3)]
    first = actions.replay_dead_letters(ADA, actions.ReplaySelection(ids=[x.id for x in letters]), "fixed",
                                        limit=2, rate=100)
    rest = actions.replay_dead_letters(ADA, actions.ReplaySelection(ids=[x.id for x in letters]), "fixed", rate=100)
    again = actions.replay_dead_letters(ADA, actions.ReplaySelection(ids=[x.id for x in letters]), "fixed", rate=100)

    assert (len(first.replayed), first.left) == (2, 1) and "run it again" in first.message
    assert len(rest.replayed) == 1
    assert not again.replayed and again.message.startswith("nothing to do")
    assert DeadLetter.objects.filter(status="replayed", replay_count=1).count() == 3
    assert len(audit_rows(action="replay_dead_letter")) == 3


def test_discarding_keeps_when_it_was_last_seen_and_is_done_once():
    dead = letter()
    last_seen = dead.last_seen
    first = actions.discard_dead_letter(ADA, dead.id, "a test message")
    again = actions.discard_dead_letter(ADA, dead.id, "a test message")
    dead.refresh_from_db()
    assert first.changed and not again.changed
    assert dead.status == "discarded" and dead.last_seen == last_seen and dead.discarded_at is not None
    assert len(audit_rows(action="discard_dead_letter")) == 1


# --- restock --------------------------------------------------------------------------------------
@pytest.fixture
def mug():
    Product.objects.create(sku="SKU-MUG", name="Mug", price=Decimal("12.50"))
    return StockItem.objects.using("inventory").create(sku="SKU-MUG", available=5)


def test_a_restock_goes_to_inventory_as_a_command_applied_once(mug):
    request_id = uuid.uuid4()
    first = actions.restock(ADA, "SKU-MUG", "7", "delivery from the supplier", request_id=request_id)
    again = actions.restock(ADA, "SKU-MUG", 7, "delivery from the supplier", request_id=request_id)
    assert first.changed and not again.changed

    [row] = OutboxMessage.objects.filter(message_type="inventory.restock")
    command = Command.from_dict(row.body)
    assert str(row.id) == command.message_id == str(request_id)
    messaging.handle(command)
    messaging.handle(Command.from_dict(row.body))  # delivered twice

    assert StockItem.objects.using("inventory").get(sku="SKU-MUG").available == 12
    [adjustment] = StockAdjustment.objects.using("inventory").all()
    assert (adjustment.quantity, adjustment.operator, adjustment.available_after) == (7, "ada", 12)
    [entry] = audit_rows(action="restock")
    assert (entry.target_type, entry.target_id, entry.request_id) == ("sku", "SKU-MUG", request_id)


@pytest.mark.parametrize("sku, quantity, message", [
    ("SKU-NOPE", 3, "no product"), ("SKU-MUG", 0, "between 1 and"), ("SKU-MUG", -4, "between 1 and"),
    ("SKU-MUG", "2.5", "whole number"), ("SKU-MUG", 10**9, "between 1 and"),
])
def test_a_restock_that_cannot_be_done_says_why_and_sends_nothing(mug, sku, quantity, message):
    with pytest.raises(actions.ActionRefused, match=message):
        actions.restock(ADA, sku, quantity, "count")
    assert not OutboxMessage.objects.filter(message_type="inventory.restock").exists() and not audit_rows()


# --- the command line -----------------------------------------------------------------------------
def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_the_command_line_resolves_and_shows_a_saga_audited_with_the_os_user():
    order, scenario = parked_order()
    assert "resolved" in run("sagas", "resolve", str(scenario.saga_id), "--reason", "refunded by hand")
    assert run("sagas", "resolve", str(scenario.saga_id), "--reason", "again").startswith("nothing to do")

    shown = run("sagas", "show", str(scenario.saga_id))
    assert "send inventory.reserve" in shown and "compensate inventory.release" in shown
    assert "still to come" not in shown  # resolved: nothing goes forward
    assert "refunded by hand" in shown
    [entry] = audit_rows()
    assert entry.via == "cli" and entry.operator


def test_the_command_line_refuses_an_action_without_a_reason():
    order, scenario = parked_order()
    with pytest.raises(CommandError, match="reason is required"):
        run("sagas", "retry", str(scenario.saga_id), "--reason", " ")


def test_the_command_line_counts_a_filtered_replay_first():
    letter(), letter(queue="inventory.commands", message_type="inventory.release")
    out = run("deadletters", "replay", "--queue", "payments.commands", "--type", "payments.void", "--dry-run")
    assert "1 archived dead letter(s) would be replayed (payments.commands: 1)" in out
    with pytest.raises(CommandError, match="reason is required"):
        run("deadletters", "replay", "--queue", "payments.commands")
    assert DeadLetter.objects.filter(status="archived").count() == 2


def test_the_command_line_shows_the_steps_still_to_come_of_a_running_saga():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve").reply_success()
    shown = run("sagas", "show", str(scenario.saga_id))
    assert "still to come: create_shipment, capture, notify" in shown
    assert "reply" in shown and "succeeded" in shown
