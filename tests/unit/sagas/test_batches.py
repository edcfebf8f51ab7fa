"""Replies applied in a batch (sagas/consumer.py -> engine.replies_apply): one transaction, each
reply as it would have been applied alone, and what cannot be applied says so without holding up
the others."""
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contracts import Command, Reply
from sagas import engine
from sagas.definitions import PLACE_ORDER
from sagas.models import SagaEvent, SagaInstance
from tests.unit.sagas.saga_harness import given, place_order_context

pytestmark = pytest.mark.django_db(databases="__all__")


def waiting_for_reserve(count):
    scenarios = [given(PLACE_ORDER, place_order_context()).expect_command("inventory.reserve") for _ in range(count)]
    return scenarios


def test_a_batch_moves_every_saga_in_it_as_one_reply_at_a_time_would():
    scenarios = waiting_for_reserve(5)
    replies = [Reply.to(s.command, "succeeded", data={"reservation_id": f"res-{i}"}) for i, s in enumerate(scenarios)]
    versions = [s.saga.version for s in scenarios]

    outcomes = engine.replies_apply(replies)

    assert outcomes == [("applied", "")] * 5
    for i, scenario in enumerate(scenarios):
        scenario.command = None
        scenario.expect_command("payments.authorize")
        assert scenario.step_statuses()["reserve_stock"] == "succeeded"
        assert scenario.saga.context["results"]["reserve_stock"] == {"reservation_id": f"res-{i}"}
        assert scenario.saga.version == versions[i] + 1  # one applied reply each
    assert SagaEvent.objects.filter(kind="reply").count() == 5


def test_a_batch_reads_its_sagas_and_their_steps_in_two_statements_locking_in_id_order():
    scenarios = waiting_for_reserve(4)
    replies = [Reply.to(s.command, "failed", reason="out_of_stock") for s in reversed(scenarios)]

    with CaptureQueriesContext(connection) as queries:
        engine.replies_apply(replies)

    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    [lock] = [sql for sql in selects if "FOR UPDATE" in sql]
    assert 'FROM "saga"' in lock and "ORDER BY" in lock and lock.index("ORDER BY") < lock.index("FOR UPDATE")
    assert len([sql for sql in selects if 'FROM "saga_step"' in sql]) == 1
    assert {s.saga.status for s in scenarios} == {"compensated"}


def test_a_copy_of_a_reply_in_the_same_batch_is_stale_as_it_would_be_in_the_next():
    [scenario] = waiting_for_reserve(1)
    reply = Reply.to(scenario.command, "succeeded", data={"reservation_id": "res-1"})
    version = scenario.saga.version

    outcomes = engine.replies_apply([reply, reply])

    assert outcomes == [("applied", ""), ("stale", "")]
    assert scenario.saga.version == version + 1
    kinds = list(SagaEvent.objects.filter(saga_id=scenario.saga_id, kind__in=["reply", "stale_reply"])
                 .values_list("kind", flat=True))
    assert sorted(kinds) == ["reply", "stale_reply"]


def test_two_replies_to_one_saga_in_a_batch_move_it_twice():
    [scenario] = waiting_for_reserve(1)
    reserve = scenario.command
    version = scenario.saga.version
    engine.replies_apply([Reply.to(reserve, "succeeded", data={})])
    scenario.command = None
    scenario.expect_command("payments.authorize")
    authorize = scenario.command
    # The authorization's answer, and a second (late) copy of the reservation's, together.
    outcomes = engine.replies_apply([Reply.to(authorize, "succeeded", data={"payment_id": "p"}),
                                     Reply.to(reserve, "succeeded", data={})])

    assert [o for o, _ in outcomes] == ["applied", "stale"]
    scenario.command = None
    scenario.expect_command("shipping.create")
    assert scenario.saga.version == version + 2


def test_a_reply_for_no_saga_or_an_unloaded_version_is_named_and_the_others_go_through():
    good, pinned = waiting_for_reserve(2)
    SagaInstance.objects.filter(id=pinned.saga_id).update(definition_version=42)
    stray = Command(type="inventory.reserve", saga_id=str(uuid.uuid4()), step="reserve_stock", payload={})
    replies = [Reply.to(good.command, "succeeded", data={}), Reply.to(stray, "succeeded", data={}),
               Reply.to(pinned.command, "succeeded", data={})]

    outcomes = engine.replies_apply(replies)

    assert outcomes[0] == ("applied", "") and outcomes[1] == ("unknown", "")
    assert outcomes[2][0] == "unreadable" and "place_order v42" in outcomes[2][1]
    assert good.step_statuses()["reserve_stock"] == "succeeded"
    assert pinned.step_statuses()["reserve_stock"] == "running"
    assert not SagaEvent.objects.filter(saga_id=pinned.saga_id, kind="reply").exists()


def test_one_reply_alone_is_a_batch_of_one_and_an_unloaded_version_still_raises():
    [scenario] = waiting_for_reserve(1)
    SagaInstance.objects.filter(id=scenario.saga_id).update(definition_version=42)

    with pytest.raises(engine.DefinitionNotLoaded, match="v42"):
        engine.reply_apply(Reply.to(scenario.command, "succeeded", data={}))
