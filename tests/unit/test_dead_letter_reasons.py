"""Dead letters counted by queue and kind of reason (orderhub_dead_letters_archived_total): the
archive's real reasons map onto a closed list of labels."""
import pytest
from prometheus_client import REGISTRY

from orderhub import process_metrics
from orderhub.deadletters.services import deadletter_archive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("reason, kind", [
    ("malformed: payload.sku: expected a non-empty string", "malformed"),
    ("bug: ZeroDivisionError: division by zero", "handler_error"),
    ("unreadable version: shipping.create v3: this release reads v1 and v2", "unreadable_version"),
    ("webhook undeliverable after 12 attempts to https://x/: HTTP 503", "webhook_undeliverable"),
    ("retries exhausted after 3 attempts (infrastructure): OperationalError: x; outcome unknown", "retries_exhausted"),
    ("could not publish the reply: OperationalError: gone", "reply_unpublished"),
    ("rabbitmq: delivery_limit", "delivery_limit"),
    ("rabbitmq: expired", "expired"),
    ("rabbitmq: rejected", "rejected"),
    ("something new " + "x" * 300, "other"),
])
def test_every_reason_has_a_kind_from_a_closed_list(reason, kind):
    assert process_metrics.reason_kind(reason) == kind


def count(queue, reason):
    return REGISTRY.get_sample_value("orderhub_dead_letters_archived_total", {"queue": queue, "reason": reason}) or 0


def test_an_archived_letter_is_counted_once_committed_and_a_forged_queue_mints_no_label():
    before = count("payments.commands", "delivery_limit"), count("other", "delivery_limit")
    headers = {"x-death": [{"queue": "payments.commands", "reason": "delivery_limit", "count": 1}]}
    deadletter_archive(body=b"[]", headers=headers | {"id": "dl-count-1"}, properties={}, dlq="payments.commands.dlq")
    forged = {"x-death": [{"queue": "forged-queue-name", "reason": "delivery_limit", "count": 1}]}
    deadletter_archive(body=b"[]", headers=forged | {"id": "dl-count-2"}, properties={}, dlq="payments.commands.dlq")
    assert (count("payments.commands", "delivery_limit"), count("other", "delivery_limit")) == (before[0] + 1,
                                                                                                 before[1] + 1)
