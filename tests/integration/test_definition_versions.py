"""A definition version that live sagas are pinned to cannot be dropped unnoticed: an orchestrator
of a release that does not load it refuses to start, and says which version and how many sagas."""
import subprocess

import pytest

from sagas.models import SagaInstance
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
