"""Replies to earlier commands of a step (no broker): recorded, and handled by the rules of
engine._on_late_reply; a late success is still a success where the saga still wants it."""
import uuid
from datetime import timedelta

import pytest

from contracts import Reply
from sagas import engine
from sagas.definitions import PLACE_ORDER
from sagas.models import SagaEvent
from tests.unit.sagas.saga_harness import given, place_order_context, sweep

pytestmark = pytest.mark.django_db(databases="__all__")

BEFORE_CAPTURE = ("inventory.reserve", "payments.authorize", "shipping.create")
AUTHORIZE, CAPTURE = PLACE_ORDER.steps[1], PLACE_ORDER.steps[3]


def due(scenario, step):
    return scenario.step(step).deadline_at + timedelta(milliseconds=1)


def silence(scenario, step, spec):
    """Let the awaited command go unanswered through all its resends."""
    for _ in range(spec.resends + 1):
        sweep(now=due(scenario, step))


def events(scenario, kind):
    return SagaEvent.objects.filter(saga_id=scenario.saga_id, kind=kind)


def void_pending():
    """A saga compensating a failed shipment: the void awaited, the reservation still held."""
    return (
        given(PLACE_ORDER, place_order_context())
        .expect_command("inventory.reserve").reply_success()
        .expect_command("payments.authorize").reply_success()
        .expect_command("shipping.create").reply_failure("address_unsupported")
        .expect_command("payments.void")
    )


def test_a_success_to_an_earlier_attempt_of_a_compensation_completes_it():
    scenario = void_pending()
    first_void = scenario.command
    silence(scenario, "authorize", AUTHORIZE)
    scenario.expect_command("payments.void", attempt=2)
    second_void = scenario.command

    assert scenario.apply(Reply.to(first_void, "succeeded")) == "applied"

    assert scenario.step("authorize").status == "compensated"
    assert events(scenario, "late_reply").get().message_type == "payments.void"
    scenario.expect_command("inventory.release").reply_success().expect_status(
        "compensated", failure_reason="address_unsupported")
    # The second attempt's own success, when it comes, changes nothing.
    before = scenario.state()
    assert scenario.apply(Reply.to(second_void, "succeeded")) == "late"
    assert scenario.state() == before


def test_a_saga_left_compensation_failed_resumes_by_itself_when_its_compensation_reports_success():
    scenario = void_pending()
    voids = [scenario.command]
    for attempt in range(2, AUTHORIZE.compensation_sends + 1):
        silence(scenario, "authorize", AUTHORIZE)
        voids.append(scenario.expect_command("payments.void", attempt=attempt).command)
    silence(scenario, "authorize", AUTHORIZE)
    scenario.expect_status("compensation_failed")

    assert scenario.apply(Reply.to(voids[1], "succeeded")) == "applied"

    scenario.expect_status("compensating")
    assert scenario.saga.ended_at is None
    assert events(scenario, "status").filter(body__resumed__startswith="a late success").count() == 1
    (
        scenario.expect_command("inventory.release").reply_success()
        .expect_status("compensated", failure_reason="address_unsupported")
    )
    assert scenario.compensation_order() == ["authorize", "reserve_stock"]


def test_a_stuck_saga_goes_on_by_itself_when_an_earlier_attempt_of_its_step_reports_success():
    scenario = given(PLACE_ORDER, place_order_context()).succeed(*BEFORE_CAPTURE).expect_command("payments.capture")
    captures = [scenario.command]
    for attempt in range(2, CAPTURE.max_attempts + 1):
        silence(scenario, "capture", CAPTURE)
        captures.append(scenario.expect_command("payments.capture", attempt=attempt).command)
    silence(scenario, "capture", CAPTURE)
    scenario.expect_status("stuck", failure_reason=engine.FORWARD_STEP_STUCK)

    assert scenario.apply(Reply.to(captures[2], "succeeded", data={"captured": True})) == "applied"

    scenario.expect_status("running", failure_reason="")
    assert scenario.step("capture").status == "succeeded"
    assert scenario.saga.context["results"]["capture"] == {"captured": True}
    scenario.expect_command("notifications.send").reply_success().expect_status("completed")


def test_a_success_to_an_unanswered_earlier_attempt_completes_a_step_that_goes_forward():
    scenario = given(PLACE_ORDER, place_order_context()).succeed(*BEFORE_CAPTURE).expect_command("payments.capture")
    first = scenario.command
    silence(scenario, "capture", CAPTURE)
    scenario.expect_command("payments.capture", attempt=2)
    second = scenario.command

    assert scenario.apply(Reply.to(first, "succeeded")) == "applied"

    scenario.expect_command("notifications.send")
    assert scenario.apply(Reply.to(second, "succeeded")) == "late"


def test_a_failure_to_an_earlier_attempt_is_recorded_and_changes_nothing():
    scenario = given(PLACE_ORDER, place_order_context()).succeed(*BEFORE_CAPTURE).expect_command("payments.capture")
    first = scenario.command
    silence(scenario, "capture", CAPTURE)
    scenario.expect_command("payments.capture", attempt=2)
    before = scenario.state()

    assert scenario.apply(Reply.to(first, "failed", reason="card_declined")) == "late"

    assert scenario.state() == before
    assert events(scenario, "late_reply").count() == 1
    scenario.reply_success().expect_command("notifications.send")


def test_a_copy_of_a_late_reply_is_stale():
    scenario = void_pending()
    first_void = scenario.command
    silence(scenario, "authorize", AUTHORIZE)
    scenario.expect_command("payments.void", attempt=2)
    late = Reply.to(first_void, "succeeded")
    assert scenario.apply(late) == "applied"
    before = scenario.state()

    assert scenario.apply(late) == "stale"

    assert scenario.state() == before
    assert events(scenario, "stale_reply").count() == 1


def test_a_reply_to_a_command_the_saga_never_sent_is_stale():
    scenario = given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve")
    forged = Reply.to(scenario.command, "succeeded").to_dict() | {"in_reply_to": str(uuid.uuid4()),
                                                                   "message_id": str(uuid.uuid4())}
    before = scenario.state()

    assert scenario.apply(Reply.from_dict(forged)) == "stale"

    assert scenario.state() == before
