"""The saga engine, driven through the place_order definition one reply at a time (no broker)."""
import dataclasses
import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from contracts import Command, Reply
from sagas import engine
from sagas.definitions import PLACE_ORDER
from sagas.engine import InvalidSagaDefinition, Saga, SagaNotCancellable, Step
from sagas.models import OutboxMessage, SagaEvent
from tests.unit.sagas.saga_harness import given, place_order_context, sweep

pytestmark = pytest.mark.django_db(databases="__all__")

BEFORE_CAPTURE = ("inventory.reserve", "payments.authorize", "shipping.create")


# --- the happy path ---------------------------------------------------------------------------
def test_happy_path_runs_all_five_steps_and_completes():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success(reservation_id="res-1")
        .expect_command("payments.authorize").reply_success(payment_id="pay-1")
        .expect_command("shipping.create").reply_success(shipment_id="shp-1")
        .expect_command("payments.capture").reply_success()
        .expect_command("notifications.send").reply_success()
        .expect_status("completed", failure_reason="")
    )

    assert scenario.step_statuses() == {
        "reserve_stock": "succeeded",
        "authorize": "succeeded",
        "create_shipment": "succeeded",
        "capture": "succeeded",
        "notify": "succeeded",
    }
    assert [scenario.step(name).attempts for name in scenario.step_statuses()] == [1, 1, 1, 1, 1]
    assert scenario.compensations_sent == []


def test_each_command_carries_the_results_of_the_steps_before_it():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success(reservation_id="res-1")
        .expect_command("payments.authorize").reply_success(payment_id="pay-1")
        .expect_command("shipping.create")
    )

    assert scenario.command.payload["results"] == {
        "reserve_stock": {"reservation_id": "res-1"},
        "authorize": {"payment_id": "pay-1"},
    }


def test_the_saga_ending_is_announced_once_with_its_final_state():
    announced = []

    def listener(sender, saga, **kwargs):
        announced.append((saga.id, saga.status))

    engine.saga_ended.connect(listener)
    try:
        scenario = given(PLACE_ORDER, place_order_context()).succeed(
            *BEFORE_CAPTURE, "payments.capture", "notifications.send"
        )
    finally:
        engine.saga_ended.disconnect(listener)

    assert announced == [(scenario.saga_id, "completed")]


# --- failures before the pivot compensate the completed steps in reverse order ----------------
def test_out_of_stock_at_the_first_step_ends_compensated_with_nothing_to_undo():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_failure("out_of_stock", "BOOK-1")
        .expect_status("compensated", failure_reason="out_of_stock")
    )

    assert scenario.compensations_sent == []
    assert scenario.step_statuses() == {
        "reserve_stock": "failed",
        "authorize": "pending",
        "create_shipment": "pending",
        "capture": "pending",
        "notify": "pending",
    }
    assert scenario.step("reserve_stock").error == "out_of_stock: BOOK-1"


def test_declined_payment_releases_the_reservation():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_failure("payment_declined")
        .expect_command("inventory.release").reply_success()
        .expect_status("compensated", failure_reason="payment_declined")
    )

    assert scenario.compensations_sent == ["inventory.release"]
    assert scenario.compensation_order() == ["reserve_stock"]
    assert scenario.step_statuses() == {
        "reserve_stock": "compensated",
        "authorize": "failed",
        "create_shipment": "pending",
        "capture": "pending",
        "notify": "pending",
    }


def test_unsupported_address_voids_the_payment_then_releases_the_reservation():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_success()
        .expect_command("shipping.create").reply_failure("address_unsupported")
        .expect_command("payments.void").reply_success()
        .expect_command("inventory.release").reply_success()
        .expect_status("compensated", failure_reason="address_unsupported")
    )

    assert scenario.compensations_sent == ["payments.void", "inventory.release"]
    assert scenario.compensation_order() == ["authorize", "reserve_stock"]
    assert scenario.step_statuses() == {
        "reserve_stock": "compensated",
        "authorize": "compensated",
        "create_shipment": "failed",
        "capture": "pending",
        "notify": "pending",
    }


def test_failed_compensation_stops_compensating_and_ends_compensation_failed():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .succeed("inventory.reserve", "payments.authorize")
        .expect_command("shipping.create").reply_failure("address_unsupported")
        .expect_command("payments.void").reply_failure("provider_unavailable", "void refused")
        .expect_status("compensation_failed", failure_reason="address_unsupported")
    )

    # The reservation is left for an operator: releasing it after a failed void would hide the problem.
    assert scenario.compensations_sent == ["payments.void"]
    assert scenario.step_statuses()["authorize"] == "compensation_failed"
    assert scenario.step_statuses()["reserve_stock"] == "succeeded"
    assert scenario.step("authorize").error == "compensation failed: provider_unavailable: void refused"


# --- replies that are not awaited -------------------------------------------------------------
def test_duplicate_reply_is_recorded_as_stale_and_changes_nothing():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve").reply_success()
    before = scenario.state()

    assert scenario.apply(scenario.last_reply) == "stale"

    assert scenario.state() == before
    stale = SagaEvent.objects.get(saga_id=scenario.saga_id, kind=SagaEvent.Kind.STALE_REPLY)
    assert str(stale.message_id) == scenario.last_reply.message_id
    assert stale.step == "reserve_stock"


def test_reply_to_a_command_the_step_does_not_await_is_stale():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    stray = dataclasses.replace(Reply.to(scenario.command, "succeeded"), in_reply_to=str(uuid.uuid4()))
    before = scenario.state()

    assert scenario.apply(stray) == "stale"

    assert scenario.state() == before
    assert SagaEvent.objects.filter(saga_id=scenario.saga_id, kind=SagaEvent.Kind.STALE_REPLY).count() == 1
    # The reply the step does await still moves the saga on.
    scenario.reply_success().expect_command("payments.authorize")


def test_late_reply_to_a_superseded_attempt_is_stale():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .succeed(*BEFORE_CAPTURE, "payments.capture")
        .expect_command("notifications.send").reply_failure("mail_server_down")
    )
    sweep(now=timezone.now() + timedelta(minutes=5))
    scenario.expect_command("notifications.send", attempt=2)
    first_attempt = scenario.sent[-2]
    before = scenario.state()

    assert scenario.apply(Reply.to(first_attempt, "succeeded")) == "stale"

    assert scenario.state() == before
    scenario.expect_status("running")


def test_reply_for_an_unknown_saga_is_ignored():
    command = Command(
        type="inventory.reserve", saga_id=str(uuid.uuid4()), step="reserve_stock", payload=place_order_context()
    )

    assert engine.reply_apply(command.succeed()) == "unknown"

    assert not SagaEvent.objects.exists()
    assert not OutboxMessage.objects.exists()


# --- retriable steps after the pivot ----------------------------------------------------------
def test_failed_notification_is_sent_again_after_a_backoff_instead_of_compensating():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .succeed(*BEFORE_CAPTURE, "payments.capture")
        .expect_command("notifications.send").reply_failure("mail_server_down")
        .expect_no_command()
        .expect_status("running")
    )
    assert scenario.step("notify").status == "retry_wait"
    assert sweep() == 0  # not due yet

    sweep(now=timezone.now() + timedelta(minutes=5))

    scenario.expect_command("notifications.send", attempt=2).expect_status("running")
    assert scenario.step("notify").attempts == 2
    assert scenario.step("notify").status == "running"
    assert scenario.compensations_sent == []
    scenario.reply_success().expect_status("completed")


# --- cancellation -----------------------------------------------------------------------------
def test_cancel_before_the_pivot_compensates_after_the_next_successful_reply():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize")
    )

    engine.saga_cancel(saga_id=scenario.saga_id)

    assert scenario.saga.cancel_requested
    scenario.expect_status("running").expect_no_command()
    (
        scenario.reply_success()
        .expect_command("payments.void").reply_success()
        .expect_command("inventory.release").reply_success()
        .expect_status("compensated", failure_reason="cancelled_by_client")
    )
    assert scenario.compensation_order() == ["authorize", "reserve_stock"]
    assert scenario.step_statuses()["create_shipment"] == "pending"


def test_cancel_is_refused_once_capture_is_the_current_step():
    scenario = given(PLACE_ORDER, place_order_context()).succeed(*BEFORE_CAPTURE).expect_command("payments.capture")

    with pytest.raises(SagaNotCancellable) as refused:
        engine.saga_cancel(saga_id=scenario.saga_id)

    assert refused.value.code == "past_pivot"
    assert not scenario.saga.cancel_requested


def test_cancel_is_refused_when_the_saga_has_ended():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .succeed(*BEFORE_CAPTURE, "payments.capture", "notifications.send")
        .expect_status("completed")
    )

    with pytest.raises(SagaNotCancellable) as refused:
        engine.saga_cancel(saga_id=scenario.saga_id)

    assert refused.value.code == "already_final"
    assert not scenario.saga.cancel_requested


def test_cancel_is_refused_while_the_saga_is_already_compensating():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_failure("payment_declined")
        .expect_command("inventory.release")
    )

    with pytest.raises(SagaNotCancellable) as refused:
        engine.saga_cancel(saga_id=scenario.saga_id)

    assert refused.value.code == "already_final"
    scenario.reply_success().expect_status("compensated", failure_reason="payment_declined")


# --- the outbox -------------------------------------------------------------------------------
def test_every_command_written_to_the_outbox_round_trips_through_the_contract():
    given(PLACE_ORDER, place_order_context()).succeed(*BEFORE_CAPTURE, "payments.capture", "notifications.send")
    (
        given(PLACE_ORDER, place_order_context())
        .succeed("inventory.reserve", "payments.authorize")
        .expect_command("shipping.create").reply_failure("address_unsupported")
        .succeed("payments.void", "inventory.release")
    )
    rows = list(OutboxMessage.objects.commands())

    assert len(rows) == 5 + 5
    for row in rows:
        body = json.loads(json.dumps(row.body))
        assert Command.from_dict(body).to_dict() == row.body
        assert body["type"] == row.message_type
        assert body["message_id"] == str(row.id)


# --- definitions are validated when they are declared -----------------------------------------
def unique_saga_name():
    return f"test_saga_{uuid.uuid4().hex[:12]}"


def assert_rejected(steps, match):
    name = unique_saga_name()
    with pytest.raises(InvalidSagaDefinition, match=match):
        Saga(name, *steps)
    assert name not in engine.REGISTRY


def test_definition_without_steps_is_rejected():
    assert_rejected([], match="needs at least one step")


def test_definition_with_duplicate_step_names_is_rejected():
    assert_rejected(
        [
            Step("reserve_stock", "inventory.reserve", compensate="inventory.release"),
            Step("reserve_stock", "payments.authorize", compensate="payments.void"),
        ],
        match=r"duplicate step names \['reserve_stock'\]",
    )


def test_definition_naming_an_unknown_command_is_rejected():
    assert_rejected(
        [Step("reserve_stock", "inventory.reserv", compensate="inventory.release")],
        match="step 'reserve_stock' names unknown message type 'inventory.reserv'",
    )


def test_definition_naming_an_unknown_compensation_is_rejected():
    assert_rejected(
        [Step("reserve_stock", "inventory.reserve", compensate="inventory.unreserve")],
        match="step 'reserve_stock' names unknown message type 'inventory.unreserve'",
    )


def test_definition_with_two_pivots_is_rejected():
    assert_rejected(
        [
            Step("capture", "payments.capture", pivot=True),
            Step("notify", "notifications.send", pivot=True),
        ],
        match=r"more than one pivot step \['capture', 'notify'\]",
    )


def test_definition_with_a_pivot_that_compensates_is_rejected():
    assert_rejected(
        [Step("authorize", "payments.authorize", compensate="payments.void", pivot=True)],
        match="pivot step 'authorize' cannot have a compensation",
    )


def test_definition_with_a_non_retriable_step_after_the_pivot_is_rejected():
    assert_rejected(
        [
            Step("capture", "payments.capture", pivot=True),
            Step("notify", "notifications.send"),
        ],
        match="step 'notify' comes after the pivot and must be retriable",
    )


def test_definition_with_a_compensation_after_the_pivot_is_rejected():
    assert_rejected(
        [
            Step("capture", "payments.capture", pivot=True),
            Step("ship", "shipping.create", compensate="shipping.cancel", retriable=True),
        ],
        match="step 'ship' comes after the pivot and cannot have a compensation",
    )


def test_definition_reusing_a_registered_name_is_rejected():
    with pytest.raises(InvalidSagaDefinition, match="already defined"):
        Saga("place_order", Step("notify", "notifications.send"))

    assert engine.REGISTRY["place_order"] is PLACE_ORDER


def test_valid_definition_registers_itself_by_name(monkeypatch):
    monkeypatch.setattr(engine, "REGISTRY", dict(engine.REGISTRY))
    monkeypatch.setattr(engine, "VERSIONS", dict(engine.VERSIONS))
    name = unique_saga_name()

    saga = Saga(
        name,
        Step("reserve_stock", "inventory.reserve", compensate="inventory.release"),
        Step("capture", "payments.capture", pivot=True),
        Step("notify", "notifications.send", retriable=True),
    )

    assert engine.REGISTRY[name] is saga
    assert saga.pivot_index == 1
    assert [saga.past_pivot(i) for i in range(3)] == [False, True, True]
