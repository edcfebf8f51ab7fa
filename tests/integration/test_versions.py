"""Versions through the real processes: an orchestrator of a release that does not load a
definition version live sagas are pinned to refuses to start, and says which and how many; a
worker given a command of a payload version it does not read dead-letters it with that reason and
keeps serving."""
import subprocess
import uuid

import pytest

from contracts import Command
from orderhub.bus import publish
from orderhub.deadletters.models import DeadLetter
from sagas.models import SagaInstance
from tests.conftest import eventually
from tests.integration.helpers import api_client, place, product, wait_ended
from tests.support.cluster import CELERY, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]


def start_orchestrator(env):
    proc = subprocess.Popen(CELERY + ["worker", "-Q", "saga.replies,saga.control", "-P", "solo", "-n",
                                      "orchestrator-versions@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"the orchestrator started (and ran for 60 s) instead of refusing:\n{output[-2000:]}")
    return proc.returncode, output


def test_an_orchestrator_refuses_to_start_while_live_sagas_are_pinned_to_a_version_it_does_not_load(live):
    for status in ("running", "compensation_failed", "completed"):  # the completed one does not count
        SagaInstance.objects.create(saga_type="place_order", definition_version=42, correlation_id=status,
                                    status=status)

    code, output = start_orchestrator(live.env)

    assert code != 0
    assert "refusing to start the orchestrator: place_order v42: 2 live sagas pinned to it, not loaded by this " \
           "release" in output, output[-2000:]


def test_a_command_of_a_version_the_worker_does_not_read_is_dead_lettered_with_that_reason(live):
    sku = product(stock=10)
    command = Command(type="shipping.create", saga_id=str(uuid.uuid4()), step="create_shipment", version=9,
                      payload={"order_id": str(uuid.uuid4()), "address": {"country": "GB"}})
    publish("shipping.create", command.to_dict(), message_id=command.message_id)

    letter = eventually(lambda: DeadLetter.objects.filter(message_key=command.message_id).first(), timeout=15,
                        message="the v9 command in the archive")
    assert letter.reason == "unreadable version: shipping.create v9: this release reads v1"
    assert letter.queue == "shipping.commands"
    assert wait_ended(place(api_client(), sku=sku)["id"], timeout=15).status == "completed"
