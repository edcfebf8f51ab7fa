"""A RabbitMQ node dies under idle workers: the same worker processes carry on, on another node.

On a three-node cluster of its own (tests/support/rabbit_cluster.py), an orchestrator and an
inventory worker are pointed at ohr2 first. ohr2 is SIGKILLed: within 15 s each is consuming
again in the same process (same PID), `celery inspect ping` answers for it, and Flower lists it.
A worker that lost its node used to exit ("Unrecoverable error: ResourceLocked(405 ...
celery.pidbox)", issue 24); orderhub/control.py is why it no longer does. Then the killed node
comes back and the node the workers are on now is killed in turn.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from kombu import Connection

from tests.conftest import eventually
from tests.support.cluster import ROOT, Cluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("rabbitmq-server"), reason="needs RabbitMQ installed here to start a cluster"),
]

VHOST = "orderhub_node_loss"
LOG_DIR = ROOT / "var" / "test-logs" / "node-loss"
FLOWER_AUTH = ("ops", "secret-for-node-loss")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rabbit():
    from tests.support import rabbit_cluster

    rabbit_cluster.start()
    auth = (rabbit_cluster.USER, rabbit_cluster.PASSWORD)
    base = f"http://127.0.0.1:{rabbit_cluster.management_port(1)}/api"
    requests.put(f"{base}/vhosts/{VHOST}", auth=auth, timeout=30).raise_for_status()
    requests.put(f"{base}/permissions/{VHOST}/{rabbit_cluster.USER}", auth=auth, timeout=30,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    try:
        yield rabbit_cluster
    finally:
        rabbit_cluster.stop()


@pytest.fixture
def processes(rabbit, django_db_setup):
    """An orchestrator, an inventory worker and Flower, whose broker URL lists ohr2 first."""
    url = rabbit.broker_url(VHOST, nodes=[2, 3, 1])
    env = os.environ | {
        "ORDERHUB_DB_PREFIX": "test_" + settings.DB_PREFIX,
        "ORDERHUB_BROKER_URL": url,
        "ORDERHUB_RABBITMQ_MANAGEMENT_URL": rabbit.management_url(nodes=[2, 3, 1]),
        "ORDERHUB_REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for log in LOG_DIR.glob("*.log"):
        log.unlink()
    running = Cluster(env, LOG_DIR)
    keys = [running.start("orchestrator"), running.start("inventory")]
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "orderhub", "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT, env=env | {"FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
                             "FLOWER_BROKER_API": env["ORDERHUB_RABBITMQ_MANAGEMENT_URL"].split(";")[0]},
        stdout=open(LOG_DIR / "flower.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield running, keys, url, f"http://127.0.0.1:{port}"
    finally:
        flower.terminate()
        flower.wait(timeout=15)
        running.stop_all()


def inspect_ping(url, names):
    """The worker node names that answer `celery inspect ping`, run as an operator would."""
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "orderhub", "inspect", "ping", "--timeout", "2", "--json",
         "-d", ",".join(sorted(names))],
        cwd=ROOT, env=os.environ | {"ORDERHUB_BROKER_URL": url}, capture_output=True, text=True, timeout=60,
    )
    return {name for name in names if name in result.stdout}


def mailbox_nodes(rabbit, names):
    """The RabbitMQ node holding each worker's pidbox queue (the node its connection is on)."""
    queues = rabbit.management_get(f"queues/{quote(VHOST, safe='')}?columns=name,node")
    return {name: queue["node"] for queue in queues for name in names
            if queue["name"].startswith(f"{name}.celery.pidbox")}


def consumed(url, queue):
    """A malformed message onto `queue` is consumed and dead-lettered: the worker is consuming."""
    from tests.support import poison

    message_id = str(uuid.uuid4())
    with Connection(url, transport_options={"confirm_publish": True}) as connection:
        before = connection.default_channel.queue_declare(queue=f"{queue}.dlq", passive=True).message_count
        poison.publish_malformed(connection, queue, "not a task", message_id)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if connection.default_channel.queue_declare(queue=f"{queue}.dlq", passive=True).message_count > before:
                return True
            time.sleep(0.2)
    return False


def flower_lists(flower, names):
    try:
        response = requests.get(f"{flower}/api/workers?refresh=1", auth=FLOWER_AUTH, timeout=10)
    except requests.RequestException:
        return None
    return names <= set(response.json()) if response.ok else None


def test_workers_whose_broker_node_is_killed_consume_again_in_the_same_process(rabbit, processes):
    running, keys, url, flower = processes
    names = running.worker_names(keys)
    eventually(lambda: inspect_ping(url, names) == names, timeout=60, interval=0.5, message="both workers up")
    on = eventually(lambda: (found := mailbox_nodes(rabbit, names)).keys() == names and found, timeout=30,
                    interval=0.5, message="each worker's mailbox queue")
    assert set(on.values()) == {rabbit.node_name(2)}, on
    eventually(lambda: flower_lists(flower, names), timeout=60, interval=0.5, message="Flower to list both workers")
    pids = running.pids()

    for victim in (2, None):
        # The second round kills whichever node the workers have moved to, once ohr2 is back.
        node = victim or int(sorted(set(mailbox_nodes(rabbit, names).values()))[0].split("@")[0].removeprefix("ohr"))
        rabbit.kill(node)
        killed = time.monotonic()

        answered = eventually(lambda: inspect_ping(url, names) == names, timeout=15, interval=0.2,
                              message=f"both workers to answer a ping after {rabbit.node_name(node)} was killed")
        assert answered and time.monotonic() - killed < 15
        assert running.pids() == pids, "a worker process was replaced"
        assert consumed(url, "inventory.commands"), "the inventory worker does not consume"
        assert consumed(url, "saga.replies"), "the orchestrator does not consume"
        moved = mailbox_nodes(rabbit, names)
        assert moved.keys() == names and rabbit.node_name(node) not in moved.values(), moved
        eventually(lambda: flower_lists(flower, names), timeout=30, interval=0.5,
                   message="Flower to list both workers after the node's loss")

        rabbit.restart(node)
        eventually(lambda: len(rabbit.cluster_members()) == rabbit.NODES, timeout=60, interval=0.5,
                   message=f"{rabbit.node_name(node)} to rejoin the cluster")

    for log in LOG_DIR.glob("*.log"):
        assert "Unrecoverable error" not in log.read_text(errors="replace"), log.name
