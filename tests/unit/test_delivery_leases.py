"""Leases on commands (orderhub/delivery.py) and what the deadline sweep makes of them
(sagas.tasks.participant_backlog), against the real Redis; the queue depth is given."""
import time
import uuid

import pytest
from django.core.cache import cache

from orderhub import bus, delivery
from sagas import tasks
from tests.conftest import eventually


@pytest.fixture
def depth(monkeypatch):
    # The world these tests describe: no batch in hand either (an earlier test's payments batch
    # leaves its queue's mark for LEASE_SECONDS).
    cache.delete(delivery._key(delivery._in_hand_id("payments.commands")))
    depths = {"payments.commands": 0}
    monkeypatch.setattr(bus, "queue_backlog", lambda queue: depths[queue])
    return depths


def message_id():
    return str(uuid.uuid4())


def test_a_command_nobody_holds_waits_among_the_queues_backlog(depth):
    depth["payments.commands"] = 3
    assert tasks.participant_backlog()("payments.authorize", message_id()) == {"queue_backlog": 3}


def test_with_no_backlog_and_nobody_holding_it_the_deadline_stands(depth):
    assert tasks.participant_backlog()("payments.authorize", message_id()) == {
        "stands": "nobody holds it", "queue_backlog": 0}


def test_a_command_a_worker_has_handled_for_longer_than_the_deadline_is_the_participants_silence(depth):
    """Whatever the backlog: the participant has the command and has not answered (a hung provider)."""
    depth["payments.commands"] = 3
    held = message_id()
    with delivery.holding(held):
        assert delivery.state(held) == delivery.BUSY
        # As its lease reads once the worker has been at it for 5 s.
        delivery._set(held, f"{delivery.BUSY}@{time.time() - 5.0:.3f}", delivery.LEASE_SECONDS)
        seen = tasks.participant_backlog()("payments.authorize", held, busy_grace=4.0)
    assert seen["stands"] == "participant busy" and 5.0 <= seen["busy_s"] < 6.0


def test_a_command_a_worker_has_just_taken_has_the_steps_deadline_to_be_answered(depth):
    """Taken off a backlog, or back from a retry, a moment before the deadline fell due: the
    participant is not silent yet, it has the step's deadline like any command."""
    held = message_id()
    with delivery.holding(held):
        seen = tasks.participant_backlog()("payments.authorize", held, busy_grace=4.0)
    assert seen["participant"] == "busy" and 0.0 <= seen["busy_s"] < 1.0
    assert "stands" not in seen


def test_a_command_being_retried_puts_its_deadline_off(depth):
    held = message_id()
    with delivery.holding(held):
        delivery.retrying(held, 2.0)
    assert tasks.participant_backlog()("payments.authorize", held) == {"participant": "retrying"}


def test_the_lease_of_a_worker_that_stops_refreshing_it_lapses(depth, monkeypatch):
    monkeypatch.setattr(delivery, "LEASE_SECONDS", 1.0)
    depth["payments.commands"] = 1
    held = message_id()
    with delivery.holding(held):
        pass  # the worker is gone: nobody refreshes the lease
    eventually(lambda: delivery.state(held) is None, timeout=5, message="the lease to lapse")
    assert tasks.participant_backlog()("payments.authorize", held) == {"queue_backlog": 1}


def test_when_redis_cannot_be_asked_the_deadline_stands(depth, monkeypatch):
    depth["payments.commands"] = 3

    def unreachable(*args, **kwargs):
        raise ConnectionError("redis is gone")

    monkeypatch.setattr(delivery.cache, "get", unreachable)
    assert tasks.participant_backlog()("payments.authorize", message_id()) == {"stands": "the lease could not be read"}


def test_replies_and_unknown_types_have_no_participant_queue(depth):
    assert tasks.participant_backlog()("saga.reply", message_id()) is None


def test_a_command_answered_puts_its_deadline_off_though_its_busy_lease_has_not_lapsed(depth):
    """The worker answered (the reply waits in our own queue, behind the sweep's marker): the
    participant is not silent, so its deadline is put off, not judged on a `busy` left behind."""
    held = message_id()
    with delivery.holding(held):
        delivery.answered(held)
    assert delivery.state(held) == delivery.ANSWERED
    assert tasks.participant_backlog()("payments.authorize", held) == {"participant": "answered"}



def test_commands_of_a_batch_are_busy_or_queued_and_a_batch_in_hand_puts_off_an_unleased_one(depth):
    """workers/batches.py: the commands of the transaction under way are busy, the rest of the batch
    queued behind them; and while a consumer of the queue has a batch in hand, what the broker
    delivered to it meanwhile (unread, unleased, not in the queue) is not taken for silence."""
    running, waiting, unread = message_id(), message_id(), message_id()
    backlog = tasks.participant_backlog()
    with delivery.holding_many([waiting], delivery.QUEUED), \
            delivery.holding_many([running], in_hand="payments.commands"):
        assert delivery.state(running) == delivery.BUSY
        assert backlog("payments.authorize", waiting) == {"participant": "queued"}
        assert backlog("payments.authorize", unread) == {"participant": "batch in hand", "queue_backlog": 0}
        assert backlog("payments.authorize", running, busy_grace=30)["participant"] == "busy"
    delivery.answered_many([running])
    assert delivery.state(running) == delivery.ANSWERED
    # The batch's mark lapses LEASE_SECONDS after it ended; then an unleased command's deadline stands.
    eventually(lambda: not delivery.in_hand("payments.commands"), timeout=delivery.LEASE_SECONDS + 3,
               message="the batch's mark to lapse")
    assert tasks.participant_backlog()("payments.authorize", unread)["stands"] == "nobody holds it"


def test_a_batch_handler_marks_its_command_busy_while_it_runs_and_queued_once_done(depth):
    """workers/messaging.py handle_batch: a command done and waiting for its batch's commit (behind a
    slow call) is waiting its turn, not silent; the one running is busy since it started. The
    refresher writes the marks."""
    done, running = message_id(), message_id()
    backlog = tasks.participant_backlog()
    with delivery.holding_many([done, running], delivery.QUEUED):
        assert delivery.state(running) == delivery.QUEUED
        delivery.mark(running, delivery.BUSY)
        eventually(lambda: delivery.state(running) == delivery.BUSY, timeout=delivery.LEASE_SECONDS,
                   message="the refresher to write the running command's busy lease")
        assert delivery.state(done) == delivery.QUEUED
        assert backlog("payments.authorize", done) == {"participant": "queued"}
        assert backlog("payments.authorize", running, busy_grace=0)["stands"] == "participant busy"


def test_a_batch_lets_its_leases_go_as_they_stand_not_as_the_refresher_last_wrote_them(depth):
    """A handler's busy, once written by the refresher, must not outlive it: the command done and
    waiting for its reply to be confirmed is queued, not busy since its handler began."""
    command = message_id()
    with delivery.holding_many([command], delivery.QUEUED):
        delivery.mark(command, delivery.BUSY)
        eventually(lambda: delivery.state(command) == delivery.BUSY, timeout=delivery.LEASE_SECONDS,
                   message="the refresher to write the busy lease")
        delivery.mark(command, delivery.QUEUED)
    assert delivery.state(command) == delivery.QUEUED
