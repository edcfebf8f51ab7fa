"""The deadline sweep's marker task (sagas.tasks.deadlines_due), without a broker."""
import pytest
from celery.exceptions import Reject

from orderhub import topology
from sagas import tasks

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.mark.parametrize("body", [None, {}, {"queued_at": 7}, {"queued_at": "yesterday"},
                                  {"queued_at": "2026-12-02T10:00:00"}])
def test_a_malformed_marker_is_dead_lettered_with_its_reason(body):
    result = tasks.deadlines_due.apply(args=[body])

    assert result.state == "REJECTED"
    assert isinstance(result.result, Reject) and not result.result.requeue
    assert "malformed: a deadline sweep marker needs queued_at" in str(result.result.reason)


def test_a_well_formed_marker_runs_the_sweep():
    assert tasks.deadlines_due.apply(args=[{"queued_at": "2026-12-02T10:00:00+00:00"}], throw=True).get() == 0


def test_only_domain_commands_have_a_participant_queue():
    assert topology.command_queue("payments.authorize") == "payments.commands"
    assert topology.command_queue("inventory.release") == "inventory.commands"
    assert topology.command_queue("saga.reply") is None
    assert topology.command_queue("nonsense") is None
