"""Unknown outcomes, capped forward steps and a sweep that survives a bad saga (no broker)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from sagas import engine
from sagas.definitions import PLACE_ORDER
from sagas.models import OutboxMessage, SagaInstance, SagaStep
from tests.unit.sagas.saga_harness import given, place_order_context, sweep

pytestmark = pytest.mark.django_db(databases="__all__")

BEFORE_CAPTURE = ("inventory.reserve", "payments.authorize", "shipping.create")


def due(scenario, step):
    return scenario.step(step).deadline_at + timedelta(milliseconds=1)


def test_an_unknown_authorization_is_voided_with_the_steps_before_it():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_unknown("retries_exhausted", "ProviderTimeout")
        .expect_command("payments.void").reply_success()
        .expect_command("inventory.release").reply_success()
        .expect_status("compensated", failure_reason="retries_exhausted")
    )
    assert scenario.compensation_order() == ["authorize", "reserve_stock"]
    assert scenario.step("authorize").error.startswith("outcome unknown: retries_exhausted")


def test_an_unknown_capture_is_tried_again_and_never_compensated():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .succeed(*BEFORE_CAPTURE)
        .expect_command("payments.capture").reply_unknown("infrastructure_unavailable")
        .expect_no_command()
        .expect_status("running")
    )
    assert scenario.step("capture").status == "retry_wait"

    sweep(now=due(scenario, "capture"))

    scenario.expect_command("payments.capture", attempt=2).reply_success()
    scenario.succeed("notifications.send").expect_status("completed")
    assert scenario.compensations_sent == []


def test_a_capture_that_never_succeeds_parks_the_saga_for_an_operator_who_resumes_it():
    capture = PLACE_ORDER.steps[3]
    scenario = given(PLACE_ORDER, place_order_context()).succeed(*BEFORE_CAPTURE)
    for attempt in range(1, capture.max_attempts + 1):
        scenario.expect_command("payments.capture", attempt=attempt).reply_unknown("handler_error", "KeyError")
        if attempt < capture.max_attempts:
            sweep(now=due(scenario, "capture"))

    scenario.expect_status("stuck", failure_reason="forward_step_stuck")
    step = scenario.step("capture")
    assert step.status == "stuck" and "handler_error" in step.error
    assert scenario.compensations_sent == []

    engine.saga_retry(saga_id=scenario.saga_id)

    scenario.expect_command("payments.capture", attempt=capture.max_attempts + 1).reply_success()
    scenario.succeed("notifications.send").expect_status("completed")
    assert SagaInstance.objects.get(id=scenario.saga_id).failure_reason == ""


def test_a_silent_capture_is_resent_up_to_its_cap_then_parked():
    capture = PLACE_ORDER.steps[3]
    scenario = given(PLACE_ORDER, place_order_context()).succeed(*BEFORE_CAPTURE)
    scenario.expect_command("payments.capture")
    for _ in range(200):
        if scenario.saga.status != "running":
            break
        sweep(now=due(scenario, "capture"))
    saga = scenario.saga
    assert (saga.status, saga.failure_reason) == ("stuck", "forward_step_stuck")
    assert scenario.step("capture").attempts == capture.max_attempts
    assert set(OutboxMessage.objects.commands().filter(saga_id=scenario.saga_id).values_list("message_type", flat=True)) == {
        *BEFORE_CAPTURE, "payments.capture"}


def test_a_failing_notification_is_parked_after_its_cap():
    notify = PLACE_ORDER.steps[4]
    scenario = given(PLACE_ORDER, place_order_context()).succeed(*BEFORE_CAPTURE, "payments.capture")
    for attempt in range(1, notify.max_attempts + 1):
        scenario.expect_command("notifications.send", attempt=attempt).reply_failure("mail_server_down")
        if attempt < notify.max_attempts:
            sweep(now=due(scenario, "notify"))
    scenario.expect_status("stuck", failure_reason="forward_step_stuck")


def test_a_compensation_whose_worker_lost_its_database_is_sent_again():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_failure("payment_declined")
        .expect_command("inventory.release").reply_unknown("infrastructure_unavailable")
        .expect_command("inventory.release", attempt=2).reply_success()
        .expect_status("compensated", failure_reason="payment_declined")
    )
    assert scenario.step("reserve_stock").status == "compensated"


def test_a_compensation_that_ran_out_of_its_own_retries_needs_an_operator():
    (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_failure("payment_declined")
        .expect_command("inventory.release").reply_unknown("retries_exhausted")
        .expect_status("compensation_failed")
    )


def test_the_deadline_sweep_carries_on_past_a_saga_it_cannot_handle():
    broken = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    healthy = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    SagaInstance.objects.filter(id=broken.saga_id).update(saga_type="retired_saga")
    # The broken saga's deadline comes first, every time.
    SagaStep.objects.filter(saga_id=broken.saga_id, index=0).update(
        deadline_at=timezone.now() - timedelta(minutes=5))
    now = due(healthy, "reserve_stock")

    assert sweep(now=now) == 1

    assert healthy.step("reserve_stock").resends == 1
    step = broken.step("reserve_stock")
    assert step.sweep_failures == 1 and "retired_saga" in step.sweep_error
    assert step.deadline_at > now  # looked at again later, not first in line on every tick
