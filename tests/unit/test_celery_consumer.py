"""The check every task message passes before Celery's consume strategy sees it (no broker)."""
import json
import uuid

import pytest
from kombu.message import Message

from orderhub.celery import app
from orderhub.celery_consumer import task_message_problem
from tests.support import poison


@pytest.fixture(autouse=True, scope="module")
def tasks_registered():
    app.loader.import_default_modules()  # as a worker does when it starts


def received(body, *, content_type="application/json", content_encoding="utf-8", **headers):
    return Message(body=body if isinstance(body, bytes) else json.dumps(body).encode(), content_type=content_type,
                   content_encoding=content_encoding, headers=headers)


def test_a_task_message_as_celery_sends_it_passes():
    message = received([[{"type": "inventory.reserve"}], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                              "chord": None}],
                       task="inventory.reserve", id=str(uuid.uuid4()), retries=0, timelimit=[None, None],
                       eta=None, expires=None)
    assert task_message_problem(app, message) is None


def test_a_retry_carries_its_budgets_and_passes():
    message = received([[{}], {"retried": {"transient": 1}}, None], task="payments.capture", id=str(uuid.uuid4()),
                       retries=1, eta="2026-01-01T00:00:00+00:00")
    assert task_message_problem(app, message) is None


@pytest.mark.parametrize("kind", sorted(set(poison.KINDS) - {"not a task", "unknown task", "compression not compressed"}))
def test_every_malformed_kind_is_caught_before_the_strategy(kind):
    built = poison.malformed(kind, "inventory.commands", str(uuid.uuid4()))
    message = Message(body=built["body"], content_type=built["content_type"],
                      content_encoding=built["content_encoding"], headers=built["headers"])
    try:
        problem = task_message_problem(app, message)
    except Exception as exc:  # an undecodable body: the consumer dead-letters it the same way
        problem = f"{type(exc).__name__}: {exc}"
    assert problem, kind


def test_the_arguments_must_fit_the_task():
    message = received([[], {}, {}], task="saga.reply", id=str(uuid.uuid4()))
    assert "do not fit saga.reply" in task_message_problem(app, message)


def test_delayed_delivery_is_set_up_once_on_the_first_node_that_answers(monkeypatch):
    """Celery's own step sets it up on every URL of the list and retries a dead one for seconds
    before the worker consumes; on a cluster one live node is enough, and a dead one costs nothing."""
    from types import SimpleNamespace

    from orderhub.celery_consumer import Consumer, DelayedDelivery

    dead, live, spare = ("amqp://guest:guest@127.0.0.1:1/", "amqp://guest:guest@127.0.0.1:2/",
                         "amqp://guest:guest@127.0.0.1:3/")
    tried = []

    def setup(self, c, url):
        tried.append(url)
        if url == dead:
            raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(DelayedDelivery, "_setup_delayed_delivery", setup)
    monkeypatch.setattr(app.conf, "broker_url", ";".join([dead, live, spare]))
    DelayedDelivery(SimpleNamespace()).start(SimpleNamespace(app=app))
    assert tried == [dead, live]

    tried.clear()  # a consumer that failed over to the spare tries the spare first
    DelayedDelivery(SimpleNamespace()).start(SimpleNamespace(app=app, connection=app.connection_for_write(spare)))
    assert tried == [spare]
    assert "orderhub.celery_consumer:DelayedDelivery" in Consumer.Blueprint.default_steps
    assert not [s for s in Consumer.Blueprint.default_steps if s.startswith("celery.") and "DelayedDelivery" in s]
