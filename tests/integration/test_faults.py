"""Every sandbox fault, end to end: retries, deadlines, failing compensations, dead letters, replay."""
import io
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command

from contracts import Command
from orderhub.bus import publish
from orderhub.console.models import AuditEntry
from orderhub.deadletters.models import DeadLetter
from sagas.models import SagaEvent, SagaStep
from tests.conftest import eventually
from tests.integration.helpers import api_client, place, product, stock, wait_ended
from workers.payments.models import Inbox as PaymentsInbox
from workers.payments.models import Payment, ProviderCharge

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


def charges(order):
    return ProviderCharge.objects.filter(idempotency_key=f"{order.saga_id}:authorize")


def steps(order):
    return {step.name: step for step in SagaStep.objects.filter(saga_id=order.saga_id)}


def test_a_flaky_provider_is_retried_and_authorizes_exactly_once(live):
    sku = product(stock=5)
    order = wait_ended(place(api_client(), sku=sku, token="tok_flaky")["id"], timeout=15)

    assert order.status == "completed"
    assert charges(order).count() == 1 and charges(order).get().status == "captured"
    # Retried by the worker under the step's policy: still one attempt of the step.
    assert steps(order)["authorize"].attempts == 1


def test_an_ambiguous_answer_is_retried_without_charging_twice(live):
    sku = product(stock=5)
    order = wait_ended(place(api_client(), sku=sku, token="tok_ambiguous")["id"], timeout=15)

    assert order.status == "completed"
    assert charges(order).count() == 1 and charges(order).get().status == "captured"
    assert Payment.objects.filter(order_id=order.id, status="captured").count() == 1


def test_a_slow_provider_fails_the_step_by_its_deadline_and_compensates(live):
    sku = product(stock=5)
    order = wait_ended(place(api_client(), sku=sku, quantity=2, token="tok_slow")["id"], timeout=40)

    assert (order.status, order.failure_reason) == ("failed", "deadline_exceeded")
    authorize = steps(order)["authorize"]
    assert (authorize.status, authorize.error) == ("compensated", "deadline exceeded")
    assert SagaEvent.objects.filter(saga_id=order.saga_id, step="authorize", kind="resend").count() == 1
    assert stock(sku) == 5
    # The provider did authorize in the end; the compensation voided it, and nothing was captured.
    eventually(lambda: charges(order).filter(status="voided").count() == 1, timeout=15,
               message="the late authorization to be voided")
    assert not ProviderCharge.objects.filter(status="captured").exists()


def test_a_void_that_fails_a_few_times_is_retried_and_the_order_fails_cleanly(live):
    sku = product(stock=5)
    order = wait_ended(place(api_client(), sku=sku, token="tok_void_fails")["id"], timeout=20)

    assert (order.status, order.failure_reason) == ("failed", "payment_declined")
    assert [steps(order)[name].status for name in ("reserve_stock", "authorize", "create_shipment")] == [
        "compensated"
    ] * 3
    assert charges(order).get().status == "voided"
    assert stock(sku) == 5


def test_a_void_that_always_fails_needs_an_operator_and_resumes_once_the_fault_is_lifted(live):
    sku = product(stock=5)
    order = wait_ended(place(api_client(), sku=sku, token="tok_void_broken")["id"], timeout=30)

    assert order.status == "needs_attention"
    assert steps(order)["authorize"].status == "compensation_failed"
    letter = eventually(lambda: DeadLetter.objects.filter(message_type="payments.void").first(), timeout=10,
                        message="the exhausted void in the archive")
    assert letter.queue == "payments.commands" and letter.reason.startswith("retries exhausted")

    call_command("sandbox", "lift", "tok_void_broken", stdout=io.StringIO())
    # Replaying the dead letter applies it once; replaying it again does nothing and says so.
    call_command("deadletters", "replay", str(letter.id), "--reason", "fault lifted", stdout=io.StringIO())
    eventually(lambda: charges(order).get().status == "voided", timeout=10, message="the replayed void")
    again = io.StringIO()
    call_command("deadletters", "replay", str(letter.id), "--reason", "fault lifted", stdout=again)
    assert again.getvalue().startswith("nothing to do")
    assert DeadLetter.objects.get(id=letter.id).replay_count == 1
    assert PaymentsInbox.objects.filter(message_id=letter.message_key).count() == 1
    assert AuditEntry.objects.filter(action="replay_dead_letter", target_id=str(letter.id)).count() == 1

    call_command("sagas", "retry", str(order.saga_id), "--reason", "fault lifted", stdout=io.StringIO())

    eventually(lambda: wait_ended(order.id).status == "failed", timeout=15, message="the resumed saga to end")
    assert stock(sku) == 5
    assert Payment.objects.get(order_id=order.id).status == "voided"


def test_a_bug_in_a_handler_is_dead_lettered_at_once_with_its_reason(live):
    # A payment whose provider reference the provider has never seen: capturing it is a bug, not
    # a business answer and not a transient fault.
    saga_id, order_id = str(uuid.uuid4()), str(uuid.uuid4())
    Payment.objects.create(saga_id=saga_id, order_id=order_id, amount=Decimal("5.00"), status="authorized",
                           provider_ref="ch_unknown")
    command = Command(type="payments.capture", saga_id=saga_id, step="capture", payload={"order_id": order_id})
    publish(command.type, command.to_dict(), message_id=command.message_id)

    letter = eventually(lambda: DeadLetter.objects.filter(message_key=command.message_id).first(), timeout=15,
                        message="the capture in the archive")

    assert letter.reason == "bug: DoesNotExist: ProviderCharge matching query does not exist."
    assert letter.queue == "payments.commands" and letter.death_count == 1
    assert Payment.objects.get(saga_id=saga_id).status == "authorized"
    assert not PaymentsInbox.objects.filter(message_id=command.message_id).exists()
