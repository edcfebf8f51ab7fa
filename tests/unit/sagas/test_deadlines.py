"""Step deadlines and operator retries, driven without a broker: time is moved by passing `now`."""
from datetime import timedelta

import pytest
from django.utils import timezone

from sagas import engine
from sagas.definitions import PLACE_ORDER
from sagas.models import OutboxMessage, SagaEvent
from tests.unit.sagas.saga_harness import given, place_order_context, sweep

pytestmark = pytest.mark.django_db(databases="__all__")


def later(seconds):
    return timezone.now() + timedelta(seconds=seconds)


def past_deadline(scenario, step):
    return scenario.step(step).deadline_at + timedelta(milliseconds=1)


def test_nothing_happens_before_a_deadline():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")

    assert sweep() == 0
    assert scenario.step("reserve_stock").resends == 0


def test_an_unanswered_command_is_resent_with_the_same_message_id():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    OutboxMessage.objects.update(published_at=timezone.now())
    message_id = scenario.command.message_id

    assert sweep(now=past_deadline(scenario, "reserve_stock")) == 1

    step = scenario.step("reserve_stock")
    assert (step.status, step.resends, str(step.message_id)) == ("running", 1, message_id)
    assert OutboxMessage.objects.get(id=message_id).published_at is None  # queued for publishing again
    assert SagaEvent.objects.filter(kind="resend", message_id=message_id).count() == 1
    # The resent command's reply is applied as usual.
    scenario.reply_success().expect_command("payments.authorize")


def test_a_step_that_stays_silent_past_its_resends_times_out_and_is_compensated_with_the_others():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize")
    )
    for _ in range(PLACE_ORDER.steps[1].resends):
        sweep(now=past_deadline(scenario, "authorize"))
    assert scenario.step("authorize").resends == PLACE_ORDER.steps[1].resends

    sweep(now=past_deadline(scenario, "authorize"))

    # Timed out, and at once compensated: the authorization may have happened after all.
    assert (scenario.step("authorize").status, scenario.step("authorize").error) == ("compensating", "deadline exceeded")
    # The authorization may have happened after all: it is voided, then the reservation released.
    (
        scenario.expect_command("payments.void").reply_success()
        .expect_command("inventory.release").reply_success()
        .expect_status("compensated", failure_reason="deadline_exceeded")
    )
    assert scenario.compensation_order() == ["authorize", "reserve_stock"]


def test_a_late_success_from_a_timed_out_step_is_recorded_and_left_to_its_compensation():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize")
    )
    late = scenario.command
    for _ in range(PLACE_ORDER.steps[1].resends + 1):
        sweep(now=past_deadline(scenario, "authorize"))

    assert engine.reply_apply(late.succeed(payment_id=1)) == "late"
    assert scenario.step("authorize").status == "compensating"
    assert SagaEvent.objects.filter(kind="late_reply", message_type="payments.authorize").count() == 1
    # The void already on its way covers the late authorization.
    scenario.expect_command("payments.void")


def test_the_pivot_is_never_failed_by_a_deadline_it_is_sent_again():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .succeed("inventory.reserve", "payments.authorize", "shipping.create")
        .expect_command("payments.capture")
    )
    for _ in range(PLACE_ORDER.steps[3].resends + 1):
        sweep(now=past_deadline(scenario, "capture"))

    scenario.expect_command("payments.capture", attempt=2)
    assert scenario.step("capture").status == "running"
    assert scenario.compensations_sent == []


def test_a_silent_compensation_is_sent_anew_then_left_to_an_operator_past_its_budget():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_failure("payment_declined")
        .expect_command("inventory.release")
    )
    reserve = PLACE_ORDER.steps[0]
    for _ in range(reserve.resends + 1):
        sweep(now=past_deadline(scenario, "reserve_stock"))
    scenario.expect_command("inventory.release", attempt=2).expect_status("compensating")

    for attempt in range(3, reserve.compensation_sends + 1):
        for _ in range(reserve.resends + 1):
            sweep(now=past_deadline(scenario, "reserve_stock"))
        scenario.expect_command("inventory.release", attempt=attempt)
    for _ in range(reserve.resends + 1):
        sweep(now=past_deadline(scenario, "reserve_stock"))

    assert scenario.step("reserve_stock").compensation_attempts == reserve.compensation_sends
    scenario.expect_status("compensation_failed")
    assert scenario.step("reserve_stock").status == "compensation_failed"


def test_an_operator_retry_resumes_a_failed_compensation_and_finishes_it():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_success()
        .expect_command("shipping.create").reply_failure("address_unsupported")
        .expect_command("payments.void").reply_failure("retries_exhausted")
        .expect_status("compensation_failed")
    )

    engine.saga_retry(saga_id=scenario.saga_id)

    (
        scenario.expect_command("payments.void", attempt=2).reply_success()
        .expect_command("inventory.release").reply_success()
        .expect_status("compensated", failure_reason="address_unsupported")
    )


def test_only_a_saga_whose_compensation_failed_can_be_retried():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")

    with pytest.raises(engine.SagaNotRetriable):
        engine.saga_retry(saga_id=scenario.saga_id)


def test_every_command_carries_its_steps_retry_policy_and_a_deadline_that_covers_it():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize")
    )
    command = scenario.command
    authorize = PLACE_ORDER.steps[1]

    assert command.retry_policy == authorize.retry
    assert scenario.step("authorize").deadline_at >= later(authorize.deadline + authorize.retry.budget() - 1)


# --- a deadline measures a participant's silence, not our backlog ------------------------------
def test_a_deadline_that_passed_after_the_sweep_marker_was_queued_is_left_for_a_later_sweep():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    deadline = scenario.step("reserve_stock").deadline_at

    # The marker was queued just before the deadline, and comes out of the replies queue well after
    # it: a reply sent before then would have been applied already, one sent later may still wait.
    marker_queued_at = deadline - timedelta(milliseconds=1)
    assert sweep(now=deadline + timedelta(seconds=60), due_before=marker_queued_at) == 0
    assert (scenario.step("reserve_stock").resends, scenario.step("reserve_stock").deadline_at) == (0, deadline)

    assert sweep(now=deadline + timedelta(seconds=61), due_before=deadline) == 1
    assert scenario.step("reserve_stock").resends == 1


def test_a_deadline_is_put_off_while_the_participants_queue_holds_a_backlog_instead_of_resending():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize")
    )
    OutboxMessage.objects.update(published_at=timezone.now())
    asked = []

    def backlog(message_type, message_id, busy_grace):
        asked.append((message_type, message_id, busy_grace))
        return {"queue_backlog": 40}

    now = past_deadline(scenario, "authorize")
    assert sweep(now=now, backlog=backlog) == 1

    step = scenario.step("authorize")
    authorize = PLACE_ORDER.steps[1]
    assert asked == [("payments.authorize", scenario.command.message_id, authorize.deadline)]
    assert (step.status, step.resends, step.deferrals) == ("running", 0, 1)
    assert step.deadline_at == now + timedelta(seconds=authorize.timeout(compensation=False))
    assert SagaEvent.objects.filter(kind="deferred", body__queue_backlog=40).count() == 1
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()  # nothing resent
    # The reply, when it comes, is applied as usual.
    scenario.reply_success().expect_command("shipping.create")


def test_a_deadline_is_put_off_a_bounded_number_of_times_then_the_step_counts_as_silent():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize")
    )
    allowed = engine.max_deferrals(PLACE_ORDER.steps[1].timeout(compensation=False))
    assert allowed * PLACE_ORDER.steps[1].timeout(compensation=False) >= engine.DEFERRAL_BUDGET_SECONDS
    for _ in range(allowed):
        sweep(now=past_deadline(scenario, "authorize"), backlog=lambda message_type, message_id, busy_grace: {"queue_backlog": 1})
    assert scenario.step("authorize").deferrals == allowed

    sweep(now=past_deadline(scenario, "authorize"), backlog=lambda message_type, message_id, busy_grace: {"queue_backlog": 1})

    assert (scenario.step("authorize").resends, scenario.step("authorize").deferrals) == (1, allowed)


def test_a_new_attempt_starts_with_no_deferrals_and_a_due_retry_is_never_put_off():
    scenario = (
        given(PLACE_ORDER, place_order_context())
        .succeed("inventory.reserve", "payments.authorize", "shipping.create", "payments.capture")
        .expect_command("notifications.send")
    )
    sweep(now=past_deadline(scenario, "notify"), backlog=lambda message_type, message_id, busy_grace: {"participant": "retrying"})
    assert scenario.step("notify").deferrals == 1
    scenario.reply_failure("smtp_down")
    assert scenario.step("notify").status == "retry_wait"

    sweep(now=past_deadline(scenario, "notify"), backlog=lambda message_type, message_id, busy_grace: {"participant": "retrying"})

    scenario.expect_command("notifications.send", attempt=2)
    assert scenario.step("notify").deferrals == 0


def test_a_command_still_in_the_outbox_at_its_deadline_is_published_and_given_its_time_not_resent(
        django_capture_on_commit_callbacks, monkeypatch):
    """Seen under chaos: the orchestrator died between committing a command and publishing it, and
    the relay published it 8 s later; its deadline had counted that as the participant's silence.
    A command the participant has not had is our backlog: it is published, and the deadline put off."""
    from sagas import outbox

    scenario = (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize")
    )
    published = []
    monkeypatch.setattr(outbox, "publish_after_commit", published.extend)
    asked = []
    now = past_deadline(scenario, "authorize")
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.deadlines_sweep(now=now, backlog=lambda *args, **kwargs: asked.append(args)) == 1

    step = scenario.step("authorize")
    assert (step.status, step.resends, step.deferrals) == ("running", 0, 1)
    assert step.deadline_at == now + timedelta(seconds=PLACE_ORDER.steps[1].timeout(compensation=False))
    assert SagaEvent.objects.filter(kind="deferred", body__unpublished=True).count() == 1
    assert published == [step.message_id] and asked == []  # published now; the participant not asked
    # Once published, a deadline that passes is the participant's silence again: resent.
    sweep(now=past_deadline(scenario, "authorize"))
    assert scenario.step("authorize").resends == 1
