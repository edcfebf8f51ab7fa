"""A short run of the chaos suite as part of `make test`: about 100 orders, a few SIGKILLs, one
RabbitMQ restart, one round of terminated PostgreSQL backends, the payments database unreachable
for longer than a worker's infrastructure retries, and every invariant checked."""
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.cluster import ROOT

pytestmark = [pytest.mark.integration]


def test_a_short_chaos_run_keeps_every_invariant():
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos.run", "--orders", "100", "--rate", "8", "--kill-every", "2.5",
         "--time-limit", "400"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    print(run.stdout[-6000:], run.stderr[-3000:])

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "chaos: 0 violations" in run.stdout
    if shutil.which("rabbitmqctl"):  # the broker is this machine's own: it must have been restarted
        assert "RabbitMQ restart             done" in run.stdout
    assert "PostgreSQL backends          done" in run.stdout
    assert "payments DB outage           done" in run.stdout


@pytest.mark.skipif(not shutil.which("rabbitmq-server"), reason="needs RabbitMQ installed here to start a cluster")
def test_a_short_chaos_run_on_a_rabbitmq_cluster_that_loses_every_node_in_turn_keeps_every_invariant():
    """The same on a three-node cluster (tests/support/rabbit_cluster.py): each node in turn is
    SIGKILLed and restarted, the orchestrators' mailbox node first, saga.replies's leader next."""
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos.run", "--rabbit-cluster", "--orders", "100", "--rate", "5",
         "--kill-every", "2.5", "--node-down", "10", "--payments-db-outage", "0", "--time-limit", "500"],
        cwd=ROOT, capture_output=True, text=True, timeout=700,
    )
    print(run.stdout[-6000:], run.stderr[-3000:])

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "chaos: 0 violations" in run.stdout
    for n in (1, 2, 3):
        assert f"RabbitMQ node kill {n}" in run.stdout
    assert re.search(r"RabbitMQ node kill 1 .*holds the orchestrators' mailboxes", run.stdout)
    assert "saga.replies's leader" in run.stdout
    assert re.search(r"RabbitMQ node kills\s+3 of 3", run.stdout)
