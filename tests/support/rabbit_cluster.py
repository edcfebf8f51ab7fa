"""A three-node RabbitMQ cluster on this machine (`make cluster`, the cluster chaos run, its test).

Each node has its own name (ohr1@localhost ...), ports and data directory, and runs as the
`rabbitmq` user beside the machine's own broker (rabbit@localhost, port 5672), sharing its Erlang
cookie so one `rabbitmqctl -n <node>` talks to all of them. The nodes find each other at boot
(classic_config peer discovery); the quorum queues OrderHub declares are replicated on all three
(RabbitMQ's default group size for a quorum queue is every node of the cluster).

    python -m tests.support.rabbit_cluster start|stop|status|urls

Node i listens for AMQP on 5780+i, for its management API on 15780+i and for Erlang distribution on
25780+i, all on 127.0.0.1 only.
"""
import argparse
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

NODES = 3
AMQP_BASE, MANAGEMENT_BASE, DIST_BASE = 5780, 15780, 25780
HOME = Path("/var/lib/rabbitmq")
BASE = HOME / "orderhub-cluster"
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
USER = "guest"
PASSWORD = "guest"


def node_name(i):
    return f"ohr{i}@localhost"


def amqp_port(i):
    return AMQP_BASE + i


def management_port(i):
    return MANAGEMENT_BASE + i


def broker_url(vhost="/", nodes=range(1, NODES + 1)):
    """Every node's URL, `;`-separated: Celery and kombu fail over along the list."""
    path = quote(vhost, safe="")
    return ";".join(f"amqp://{USER}:{PASSWORD}@127.0.0.1:{amqp_port(i)}/{path}" for i in nodes)


def management_url(nodes=range(1, NODES + 1)):
    return ";".join(f"http://{USER}:{PASSWORD}@127.0.0.1:{management_port(i)}/api/" for i in nodes)


def _node_dir(i):
    return BASE / f"n{i}"


def _env(i):
    directory = _node_dir(i)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(HOME),
        "LANG": "C.UTF-8",
        "RABBITMQ_NODENAME": node_name(i),
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port(i)),
        "RABBITMQ_DIST_PORT": str(DIST_BASE + i),
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_PID_FILE": str(directory / "pid"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


def _as_rabbitmq():
    """preexec_fn: become the rabbitmq user (the cookie in /var/lib/rabbitmq is its own)."""
    user = pwd.getpwnam("rabbitmq")
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def _write_node_files(i):
    directory = _node_dir(i)
    (directory / "log").mkdir(parents=True, exist_ok=True)
    (directory / "mnesia").mkdir(parents=True, exist_ok=True)
    (directory / "rabbitmq-env.conf").write_text("# this node's settings come from its environment\n")
    (directory / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (directory / "rabbitmq.conf").write_text(
        f"listeners.tcp.local = 127.0.0.1:{amqp_port(i)}\n"
        f"management.tcp.ip = 127.0.0.1\n"
        f"management.tcp.port = {management_port(i)}\n"
        # A lost node is noticed within seconds, not the default minute.
        "net_ticktime = 10\n"
        "cluster_partition_handling = pause_minority\n"
        "loopback_users = none\n"
        # The three find each other at their first boot (no join_cluster round).
        "cluster_formation.peer_discovery_backend = classic_config\n"
        + "".join(f"cluster_formation.classic_config.nodes.{n} = {node_name(n)}\n" for n in range(1, NODES + 1))
    )
    user = pwd.getpwnam("rabbitmq")
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)


def ctl(i, *args, check=True, timeout=120):
    return subprocess.run([CTL, "-n", node_name(i), *args], env=_env(i), preexec_fn=_as_rabbitmq,
                          capture_output=True, text=True, check=check, timeout=timeout)


def pid(i):
    try:
        return int((_node_dir(i) / "pid").read_text().strip())
    except (OSError, ValueError):
        return None


def running(i):
    number = pid(i)
    if number is None:
        return False
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return False
    return True


def launch(i, wait=True):
    """Start node i (its data kept from before) and wait until it runs."""
    _write_node_files(i)
    with open(_node_dir(i) / "log" / "startup.log", "ab") as log:
        subprocess.Popen([SERVER], env=_env(i), preexec_fn=_as_rabbitmq, stdout=log,  # noqa: PLW1509
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(HOME))
    if wait:
        wait_started(i)


def wait_started(i, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid(i) and ctl(i, "await_startup", "--timeout", "5", check=False, timeout=30).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{node_name(i)} did not start in {timeout}s; see {_node_dir(i) / 'log'}")


def start(fresh=True):
    """Start the three nodes and join 2 and 3 to 1. `fresh` wipes their data first."""
    if not shutil.which("rabbitmqctl") or not Path(SERVER).exists():
        raise RuntimeError("RabbitMQ is not installed on this machine (Debian package rabbitmq-server)")
    stop()
    if fresh and BASE.exists():
        shutil.rmtree(BASE)
    BASE.mkdir(parents=True, exist_ok=True)
    os.chown(BASE, pwd.getpwnam("rabbitmq").pw_uid, pwd.getpwnam("rabbitmq").pw_gid)
    for i in range(1, NODES + 1):
        launch(i, wait=False)  # the three boot side by side
    for i in range(1, NODES + 1):
        wait_started(i)
    deadline = time.monotonic() + 60
    while len(members := cluster_members()) < NODES and time.monotonic() < deadline:
        time.sleep(0.5)
    if len(members) != NODES:
        raise RuntimeError(f"the cluster has {members} running, not {NODES} nodes")
    return members


def cluster_members(via=None):
    """The running nodes as one node sees them."""
    for i in ([via] if via else range(1, NODES + 1)):
        if not running(i):
            continue
        result = ctl(i, "eval", "rabbit_nodes:all_running().", check=False, timeout=30)
        if result.returncode == 0:
            return sorted(name.strip(" []'\n") for name in result.stdout.strip().strip("[]").split(",") if name.strip())
    return []


def kill(i):
    """SIGKILL node i's Erlang VM: the node is gone without a goodbye, as in a crash."""
    number = pid(i)
    if number is None:
        raise RuntimeError(f"{node_name(i)} has no pid file")
    os.kill(number, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while running(i) and time.monotonic() < deadline:
        time.sleep(0.1)


def restart(i):
    """Start a killed node again; it rejoins the cluster from its own data."""
    launch(i)


def stop():
    for i in range(1, NODES + 1):
        if running(i):
            ctl(i, "stop", check=False)
        if running(i):
            kill(i)


def management_get(path, nodes=range(1, NODES + 1)):
    """GET from the first node's management API that answers."""
    error = None
    for i in nodes:
        try:
            response = requests.get(f"http://127.0.0.1:{management_port(i)}/api/{path}", auth=(USER, PASSWORD),
                                    timeout=5)
            response.raise_for_status()
            return response.json()
        except requests.RequestException as exc:
            error = exc
    raise RuntimeError(f"no node's management API answered: {error!r}")


def node_index(name):
    """ohr2@localhost -> 2."""
    return int(name.split("@")[0].removeprefix("ohr"))


def leader_of(queue, vhost):
    """The index of the node leading a quorum queue."""
    info = management_get(f"queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")
    return node_index(info["leader"])


def queues(vhost):
    """Every queue of `vhost` with its node (a classic queue's home, a quorum queue's leader), and
    a quorum queue's members and the members online."""
    return management_get(f"queues/{quote(vhost, safe='')}?columns=name,type,node,leader,members,online")


def leaders_settled(vhost, down=()):
    """True when every quorum queue of `vhost` has a leader on a node not in `down`, and every
    member that is not down is online: the queues have moved off the dead node, or caught up
    after it came back."""
    for queue in queues(vhost):
        if queue.get("type") != "quorum":
            continue
        leader = queue.get("leader")
        if not leader or node_index(leader) in down or leader not in (queue.get("online") or []):
            return False
        expected = {member for member in queue.get("members") or [] if node_index(member) not in down}
        if not expected <= set(queue.get("online") or []):
            return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status", "urls"])
    args = parser.parse_args(argv)
    if args.action == "start":
        print("running:", ", ".join(start()))
        print(f"ORDERHUB_BROKER_URL='{broker_url()}'")
        print(f"ORDERHUB_RABBITMQ_MANAGEMENT_URL='{management_url()}'")
    elif args.action == "stop":
        stop()
    elif args.action == "status":
        members = cluster_members()
        print("running:", ", ".join(members) or "none")
        return 0 if members else 1
    else:
        print(f"ORDERHUB_BROKER_URL='{broker_url()}'")
        print(f"ORDERHUB_RABBITMQ_MANAGEMENT_URL='{management_url()}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
