"""Unknown outcomes through real workers: exhausted retries never leak a hold, a copy of an answered
command changes nothing, the pivot is retried and never compensated, a forward step stuck on a bug
is parked for an operator, and one bad saga or outbox row holds up nobody else."""
import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from orderhub.bus import publish
from orderhub.deadletters.models import DeadLetter
from orderhub.orders.models import Order
from sagas import outbox
from sagas.models import OutboxMessage, SagaEvent, SagaInstance, SagaStep
from tests.conftest import eventually
from tests.integration.helpers import api_client, place, product, stock, wait_ended
from tests.support.faults import BUG, failing_writes
from workers.notifications.models import Notification
from workers.payments.models import Inbox as PaymentsInbox
from workers.payments.models import Payment, ProviderCharge

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


def charge(order):
    return ProviderCharge.objects.filter(idempotency_key=f"{order.saga_id}:authorize").first()


def steps(order):
    return {step.name: step for step in SagaStep.objects.filter(saga_id=order.saga_id)}


def commands(order, message_type):
    return SagaEvent.objects.filter(saga_id=order.saga_id, kind="command", message_type=message_type)


def no_hold_left_open(order):
    """I3's new clause: an order that did not complete leaves no authorization open at the provider."""
    held = charge(order)
    return order.status == "completed" or held is None or held.status != "authorized"


# --- 1(a): exhausted retries on authorize ----------------------------------------------------
def test_an_authorization_whose_answers_are_all_lost_is_voided_with_the_earlier_steps(live):
    sku = product(stock=5)
    order = wait_ended(place(api_client(), sku=sku, quantity=2, token="tok_timeout")["id"], timeout=30)

    # The provider did authorize; the worker never learned it. The hold must not outlive the order.
    assert (order.status, order.failure_reason) == ("failed", "retries_exhausted")
    eventually(lambda: charge(order).status == "voided", timeout=10, message="the hold to be voided")
    assert steps(order)["authorize"].status == "compensated"
    assert [c.body["type"] for c in SagaEvent.objects.filter(saga_id=order.saga_id, kind="command")
            .order_by("id")][-2:] == ["payments.void", "inventory.release"]
    assert Payment.objects.get(saga_id=order.saga_id).status == "tombstone"
    assert stock(sku) == 5
    # The unknown answer is the inbox's answer to this message id from now on.
    authorize = commands(order, "payments.authorize").get()
    assert PaymentsInbox.objects.get(message_id=authorize.message_id).reply["outcome"] == "unknown"


# --- 1(b): later copies of a message whose step gave up ---------------------------------------
def test_later_copies_of_an_unknown_authorization_change_nothing(live):
    order = wait_ended(place(api_client(), sku=product(stock=5), token="tok_timeout")["id"], timeout=30)
    eventually(lambda: charge(order).status == "voided", timeout=10, message="the hold to be voided")
    authorize = commands(order, "payments.authorize").get()
    answers = SagaEvent.objects.filter(saga_id=order.saga_id, kind__in=["reply", "stale_reply"],
                                       body__in_reply_to=str(authorize.message_id))
    assert answers.count() == 1

    # A deadline resend or a replay: the same message id gets the same answer, from the inbox.
    publish("payments.authorize", authorize.body, message_id=str(authorize.message_id))
    eventually(lambda: answers.count() == 2, timeout=15, message="the copy's answer")
    # Another attempt of the dead step (a new message id) finds the tombstone and is refused.
    late = authorize.body | {"message_id": str(uuid.uuid4()), "attempt": 2}
    publish("payments.authorize", late, message_id=late["message_id"])
    refused = eventually(lambda: PaymentsInbox.objects.filter(message_id=late["message_id"]).first(), timeout=15,
                         message="the late attempt's inbox row")

    assert refused.reply["reason"] == "already_compensated"
    first, copy = (event.body for event in answers.order_by("id"))
    assert copy["outcome"] == "unknown" and copy["detail"] == first["detail"]
    assert charge(order).status == "voided"
    assert ProviderCharge.objects.filter(idempotency_key__startswith=str(order.saga_id)).count() == 1
    assert Payment.objects.get(saga_id=order.saga_id).status == "tombstone"


def test_a_lost_database_does_not_use_up_the_steps_own_retries_nor_leak_a_hold_on_replay(live):
    """The issue's reproduction: tok_flaky while the payments database is lost for the first two
    tries, then every dead letter replayed."""
    sku = product(stock=5)
    with failing_writes("payments", "payments_inbox", times=2):
        order = wait_ended(place(api_client(), sku=sku, token="tok_flaky")["id"], timeout=30)

    for _ in range(3):  # replay until nothing of this order is left in the archive
        letters = DeadLetter.objects.filter(status="archived", body__contains=str(order.saga_id))
        if not letters.exists():
            break
        deaths = {letter.id: letter.death_count for letter in letters}
        call_command("deadletters", "replay", "--all", "--reason", "fixed", stdout=io.StringIO())
        eventually(lambda: all(answered_or_archived_again(i, n) for i, n in deaths.items()), timeout=30,
                   message="the replayed dead letters to be handled")
    order.refresh_from_db()

    assert order.status == "completed"
    assert charge(order).status == "captured"
    assert steps(order)["authorize"].attempts == 1
    assert no_hold_left_open(order)


def answered_or_archived_again(letter_id, deaths):
    letter = DeadLetter.objects.get(id=letter_id)
    return (letter.status == "archived" and letter.death_count > deaths) or PaymentsInbox.objects.filter(
        message_id=letter.message_key).exists()


# --- 1(c): the pivot's outcome is unknown -----------------------------------------------------
def test_a_capture_whose_database_write_keeps_failing_is_retried_never_voided_and_resumes(live):
    sku = product(stock=5)
    with failing_writes("payments", "payments_payment", when="NEW.status = 'captured'"):
        order = wait_ended(place(api_client(), sku=sku, token="tok_ok")["id"], timeout=90)

        assert (order.status, order.failure_reason) == ("needs_attention", "forward_step_stuck")
        capture = steps(order)["capture"]
        assert capture.status == "stuck" and "infrastructure_unavailable" in capture.error
        assert capture.attempts == 5
        assert not commands(order, "payments.void").exists()
        assert charge(order).status == "captured"  # the provider did capture: the money is taken
    # Leaving the block lifts the fault: the payments database takes writes again.

    call_command("sagas", "retry", str(order.saga_id), "--reason", "fault lifted", stdout=io.StringIO())

    eventually(lambda: Order.objects.get(id=order.id).status == "completed", timeout=30,
               message="the resumed order to complete")
    assert Payment.objects.get(saga_id=order.saga_id).status == "captured"
    assert charge(order).status == "captured"
    assert Order.objects.get(id=order.id).failure_reason is None
    assert not commands(order, "payments.void").exists()


# --- 3: a forward step with a deterministic bug -----------------------------------------------
def test_a_notification_that_always_hits_a_bug_parks_the_order_and_resumes_after_the_fix(live):
    sku = product(stock=5)
    with failing_writes("notifications", "notifications_notification", sqlstate=BUG, events="INSERT"):
        order = wait_ended(place(api_client(), sku=sku, token="tok_ok")["id"], timeout=60)

        assert (order.status, order.failure_reason) == ("needs_attention", "forward_step_stuck")
        notify = steps(order)["notify"]
        assert notify.status == "stuck" and notify.attempts == 5
        assert charge(order).status == "captured"
        sent = set(commands(order, "notifications.send").values_list("message_id", flat=True))
        eventually(lambda: DeadLetter.objects.filter(message_key__in=[str(m) for m in sent]).count() == 5,
                   timeout=15, message="one dead letter per attempt")
        assert DeadLetter.objects.filter(message_key__in=[str(m) for m in sent],
                                         reason__startswith="bug: InternalError").count() == 5
        # The worker's log shows the bug's full traceback, as text, under the message's ids.
        log = (live.log_dir / "notifications-1.log").read_text(errors="replace")
        with_traceback = [entry for entry in log.split("\ntimestamp=")
                          if any(str(m) in entry for m in sent) and "\nTraceback (most recent call last):\n" in entry]
        assert with_traceback, "no traceback logged for the failing notification"
        assert "\ndjango.db.utils.InternalError: test fault on notifications_notification" in with_traceback[-1]

    call_command("sagas", "retry", str(order.saga_id), "--reason", "fault lifted", stdout=io.StringIO())

    eventually(lambda: Order.objects.get(id=order.id).status == "completed", timeout=30,
               message="the resumed order to complete")
    assert Notification.objects.filter(saga_id=order.saga_id).count() == 1


# --- 2: one bad saga or outbox row ------------------------------------------------------------
def test_a_saga_the_sweep_cannot_handle_does_not_stop_other_deadlines(live):
    retired = SagaInstance.objects.create(saga_type="retired_saga", correlation_id=str(uuid.uuid4()))
    SagaStep.objects.create(saga=retired, index=0, name="gone", status="running", message_id=uuid.uuid4(),
                            deadline_at=timezone.now() - timedelta(hours=1))

    order = wait_ended(place(api_client(), sku=product(stock=5), token="tok_slow")["id"], timeout=45)

    assert (order.status, order.failure_reason) == ("failed", "deadline_exceeded")
    stuck = SagaStep.objects.get(saga=retired)
    assert stuck.sweep_failures >= 1 and "retired_saga" in stuck.sweep_error
    assert stuck.status == "running"


def test_an_outbox_row_that_cannot_be_published_does_not_hold_up_the_others(live, monkeypatch):
    # A routing key longer than AMQP allows (255 bytes): this row can never be published.
    poison = OutboxMessage.objects.create(id=uuid.uuid4(), message_type="inventory." + "€" * 90,
                                          saga_id=uuid.uuid4(), body={"poison": True})
    OutboxMessage.objects.filter(id=poison.id).update(created_at=timezone.now() - timedelta(minutes=5))
    monkeypatch.setattr(outbox, "publish_committed", lambda rows: None)  # left to the relay

    order = wait_ended(place(api_client(), sku=product(stock=5))["id"], timeout=20)

    assert order.status == "completed"
    poison.refresh_from_db()
    assert poison.published_at is None and poison.publish_attempts >= 1 and "error" in poison.last_error
