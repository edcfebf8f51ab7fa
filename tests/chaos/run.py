"""The chaos suite (`make chaos`): orders through the REST API while processes die, then invariants.

It builds its own world: databases `chaos_*`, the RabbitMQ vhost `orderhub_chaos`, Redis db 2; it
starts the api, two orchestrators, two or more workers per domain, beat and the dead-letter
archiver, each under scripts/respawn.py as `make run` starts them (a process that exits on its
own is restarted, and the table counts it); places N orders with every sandbox token and address through the REST API (retrying
with the same Idempotency-Key when a request fails), cancels some, publishes malformed messages
onto domain queues, and meanwhile SIGKILLs a random worker or orchestrator every few seconds and
restarts it, restarts RabbitMQ once and terminates every PostgreSQL backend once. Then it waits
for quiet and checks the invariants I1-I6, prints a table, and exits 1 on any violation.

With --rabbit-cluster (`make chaos-cluster`) the broker is a three-node RabbitMQ cluster of its own
(tests/support/rabbit_cluster.py) and, instead of one restart, it SIGKILLs every node in turn:
first the one holding the orchestrators' exclusive mailbox queues, then the leader of
saga.replies, then the last. After each kill it waits for the quorum queues' leaders to move off
the node, restarts it after --node-down seconds, and kills the next only once it has rejoined and
every quorum queue has caught up (a majority of replicas stays up). Any process that logs
"Unrecoverable error" is a violation.

Everything is on this machine (loopback only) and bounded: N orders, and a time limit.
"""
import argparse
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
VHOST = "orderhub_chaos"
DB_PREFIX = "chaos_"
TERMINAL = {"completed", "failed", "cancelled", "needs_attention"}
# How long the first RabbitMQ node kill waits for the orchestrators' mailboxes to show (the node it kills).
MAILBOX_WAIT = 30

# scenario -> (weight, payment token, country, scarce sku)
SCENARIOS = {
    "ok": (46, "tok_ok", "GB", False),
    "cancel": (4, "tok_ok", "GB", False),
    "declined": (6, "tok_declined", "GB", False),
    "insufficient_funds": (5, "tok_insufficient_funds", "GB", False),
    "flaky": (10, "tok_flaky", "GB", False),
    "ambiguous": (8, "tok_ambiguous", "GB", False),
    "slow": (1, "tok_slow", "GB", False),
    "void_fails": (5, "tok_void_fails", "GB", False),
    "void_broken": (2, "tok_void_broken", "GB", False),
    "address_unsupported": (6, "tok_ok", "AQ", False),
    "scarce": (7, "tok_ok", "GB", True),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=5.0, help="orders placed per second")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between SIGKILLs")
    parser.add_argument("--poison", type=int, default=52,
                        help="malformed messages to inject, of every kind, spread over every queue consumed")
    parser.add_argument("--workers-per-domain", type=int, default=2)
    parser.add_argument("--no-broker-restart", action="store_true")
    parser.add_argument("--no-db-terminate", action="store_true")
    parser.add_argument("--payments-db-outage", type=float, default=25.0,
                        help="seconds the payments database refuses every connection (0: none); longer than a "
                             "worker's infrastructure retries, so some steps end with an unknown outcome")
    parser.add_argument("--settle-timeout", type=float, default=240.0)
    parser.add_argument("--time-limit", type=float, default=600.0, help="the whole run, seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rabbit-cluster", action="store_true",
                        help="run on a three-node RabbitMQ cluster and kill two of its nodes, one after the other")
    parser.add_argument("--node-down", type=float, default=15.0, help="seconds a killed node stays down")
    parser.add_argument("--probe", type=int, default=0,
                        help="once quiet, place this many tok_ok orders one at a time and report their latency "
                             "(is the system back to normal after the load?)")
    return parser.parse_args(argv)


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


HEALTH_TOKEN = "chaos-health-token"  # the harness reads /health/'s checks when the api is not up


def chaos_env():
    broker = os.environ.get("ORDERHUB_CHAOS_BROKER_URL", f"amqp://guest:guest@127.0.0.1:5672/{VHOST}")
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "orderhub.settings",
        "ORDERHUB_DB_PREFIX": DB_PREFIX,
        "ORDERHUB_BROKER_URL": broker,
        "ORDERHUB_REDIS_URL": os.environ.get("ORDERHUB_CHAOS_REDIS_URL", "redis://127.0.0.1:6379/2"),
        "ORDERHUB_OUTBOX_RELAY_INTERVAL": "0.5",
        "ORDERHUB_OUTBOX_RELAY_GRACE": "1.0",
        "ORDERHUB_DEADLINE_SWEEP_INTERVAL": "0.5",
        "ORDERHUB_SANDBOX_SLOW_SECONDS": "18",
        "ORDERHUB_THROTTLE_RATE": "1000000/min",
        "ORDERHUB_API_BIND": f"127.0.0.1:{free_port()}",
        "ORDERHUB_API_WORKERS": "2",
        "ORDERHUB_HEALTH_TOKEN": HEALTH_TOKEN,
        "ORDERHUB_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


def say(message):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the world --------------------------------------------------------------------------------
def reset_world(env):
    """Fresh vhost (through RabbitMQ's management API), fresh databases, fresh Redis (an earlier
    run's circuit, leases and beat lease are not this run's)."""
    import redis

    from orderhub import rabbitmq_api

    redis.Redis.from_url(env["ORDERHUB_REDIS_URL"], socket_timeout=10).flushdb()

    rabbitmq_api.request("DELETE", f"vhosts/{VHOST}", timeout=30)
    rabbitmq_api.request("PUT", f"vhosts/{VHOST}", timeout=30).raise_for_status()
    rabbitmq_api.request("PUT", f"permissions/{VHOST}/guest", json={"configure": ".*", "write": ".*", "read": ".*"},
                         timeout=30).raise_for_status()
    # An interrupted run may have left a database refusing connections (the payments outage).
    admin_sql("DO $$ DECLARE d text; BEGIN FOR d IN SELECT datname FROM pg_database "
              f"WHERE datname LIKE '{DB_PREFIX}%' AND NOT datallowconn "
              "LOOP EXECUTE format('ALTER DATABASE %I ALLOW_CONNECTIONS true', d); END LOOP; END $$")
    manage = [sys.executable, "manage.py"]
    subprocess.run(manage + ["setup_databases"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    for alias in ("default", "inventory", "payments", "shipping", "notifications"):
        subprocess.run(manage + ["flush", "--no-input", "--database", alias], cwd=ROOT, env=env, check=True)
    subprocess.run(manage + ["declare_topology"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def seed(rng, hook_url=None):
    from django.contrib.auth import get_user_model
    from orderhub.apikeys.services import key_create
    from orderhub.webhooks.services import endpoint_create

    from orderhub.orders.models import Product
    from workers.inventory.models import StockItem

    initial = {}
    for i in range(20):
        sku = f"CH-{i:03d}"
        Product.objects.create(sku=sku, name=f"Chaos item {i}", price=Decimal(rng.randint(100, 9999)) / 100)
        StockItem.objects.create(sku=sku, available=2000)
        initial[sku] = 2000
    Product.objects.create(sku="CH-SCARCE", name="Scarce item", price=Decimal("42.00"))
    StockItem.objects.create(sku="CH-SCARCE", available=10)
    initial["CH-SCARCE"] = 10
    client = get_user_model().objects.create(username=f"chaos-{uuid.uuid4().hex[:6]}")
    secret = endpoint_create(client=client, url=hook_url).secret if hook_url else None
    return initial, key_create(client=client, name="chaos")[1], secret


def start_cluster(env, args):
    from tests.support.cluster import WORKERS, Cluster

    # Every process under scripts/respawn.py, as `make run` starts them: one that exits on its
    # own is started again, and counted (respawned()).
    cluster = Cluster(env, ROOT / "var" / "chaos-logs", respawn=True)
    for log in cluster.log_dir.glob("*.log"):
        log.unlink()
    victims = []
    for name in WORKERS:
        count = 2 if name == "orchestrator" else args.workers_per_domain + (1 if name == "payments" else 0)
        victims += [cluster.start(name, index=i) for i in range(1, count + 1)]
    for name in ("api", "beat", "deadletters", "projections", "webhooks"):
        cluster.start(name)
    return cluster, victims


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    say(f"gave up waiting for {what} after {timeout:.0f}s")
    return False


# --- the load ---------------------------------------------------------------------------------
class Client:
    def __init__(self, base, token):
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.refused = 0  # 503 answers (admission control), each retried after Retry-After

    def call(self, method, path, *, attempts=60, **kwargs):
        """Retry through outages; the Idempotency-Key makes a retried POST safe."""
        for _ in range(attempts):
            try:
                response = self.session.request(method, self.base + path, timeout=30, **kwargs)
                if response.status_code < 500:
                    return response
                if response.status_code == 503 and response.headers.get("Retry-After"):
                    self.refused += 1
                    time.sleep(min(float(response.headers["Retry-After"]), 5.0))
                    continue
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{method} {path} kept failing")


def order_body(rng, scenario, skus):
    _, token, country, scarce = SCENARIOS[scenario]
    lines = rng.sample(skus, rng.randint(1, 3))
    items = [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in lines]
    if scarce:
        items = [{"sku": "CH-SCARCE", "quantity": 2}]
    return {
        "items": items,
        "payment_token": token,
        "shipping_address": {"name": "Chaos Monkey", "line1": "1 Loop Rd", "city": "Localhost",
                             "postal_code": "127001", "country": country},
    }


def place_orders(client, args, rng, skus):
    names = list(SCENARIOS)
    weights = [SCENARIOS[name][0] for name in names]
    plan = [(rng.choices(names, weights)[0], str(uuid.uuid4())) for _ in range(args.orders)]
    bodies = [order_body(rng, scenario, skus) for scenario, _ in plan]
    placed = {}
    started = time.monotonic()

    def place(i):
        time.sleep(max(0.0, started + i / args.rate - time.monotonic()))
        scenario, key = plan[i]
        response = client.call("POST", "/api/orders/", json=bodies[i], headers={"Idempotency-Key": key})
        if response.status_code != 202:
            raise RuntimeError(f"order {i} refused: {response.status_code} {response.text}")
        order_id = response.json()["id"]
        if scenario == "cancel":
            client.call("POST", f"/api/orders/{order_id}/cancel/")
        placed[order_id] = scenario

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(place, range(args.orders)))
    return placed


def poison_during(env, args, rng, started, injected):
    """Malformed messages of every kind (tests/support/poison.py), round-robin over every queue a
    process consumes, dead-letter queues included, at random moments while orders are placed.
    `injected` collects (queue, message id)."""
    from kombu import Connection

    from tests.support import poison

    queues = list(poison.QUEUES)
    rng.shuffle(queues)
    moments = sorted(rng.uniform(0, args.orders / args.rate) for _ in range(args.poison))
    with Connection(env["ORDERHUB_BROKER_URL"], transport_options={"confirm_publish": True}) as connection:
        for n, at in enumerate(moments):
            time.sleep(max(0.0, started + at - time.monotonic()))
            queue, message_id = queues[n % len(queues)], str(uuid.uuid4())
            poison.publish_malformed(connection, queue, rng.choice(sorted(poison.KINDS)), message_id)
            injected.append((queue, message_id))


def archived_poison(injected):
    """The injected keys the archive must hold: all but the ticks (dropped and counted instead)."""
    from orderhub import topology

    return [message_id for queue, message_id in injected if queue != topology.TICKS_QUEUE]


def api_healthy(client):
    try:
        return client.session.get(client.base + "/health/", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def why_the_api_is_down(client, cluster):
    """What /health/ says (its checks, with the harness's token) and the api's last log lines."""
    try:
        answer = requests.get(client.base + "/health/", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"},
                              timeout=10)
        say(f"/health/ {answer.status_code}: {answer.text[:2000]}")
    except requests.RequestException as exc:
        say(f"/health/ unreachable: {exc!r}")
    for log in sorted(cluster.log_dir.glob("api-*.log")):
        say(f"{log.name}, last lines:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))


# --- the chaos --------------------------------------------------------------------------------
class Monkey(threading.Thread):
    """SIGKILLs a random worker or orchestrator every few seconds and restarts it; restarts
    RabbitMQ once (30% into the planned placing time) and terminates the PostgreSQL backends once
    (at 60%), each on its own timer so the kills go on meanwhile."""

    def __init__(self, cluster, victims, args, rng, stop):
        super().__init__(daemon=True)
        self.cluster, self.victims, self.args, self.rng, self.stop = cluster, victims, args, rng, stop
        self.kills = Counter()
        self.broker_restarted = "skipped" if args.no_broker_restart else "pending"
        self.db_terminated = "skipped" if args.no_db_terminate else "pending"
        self.payments_outage = "pending" if args.payments_db_outage > 0 else "skipped"
        self.node_kills = []  # (node, wall-clock time of the kill, what happened)
        self.errors = []
        planned = args.orders / args.rate
        self.timers = []
        if args.rabbit_cluster:
            self.timers.append(threading.Timer(planned * 0.3, self._kill_every_node))
        if not args.no_broker_restart:
            self.timers.append(threading.Timer(planned * 0.3, self._once, ("broker_restarted", restart_broker)))
        if not args.no_db_terminate:
            self.timers.append(threading.Timer(planned * 0.6, self._once, ("db_terminated", terminate_backends)))
        if args.payments_db_outage > 0:
            outage = lambda: payments_database_outage(args.payments_db_outage)  # noqa: E731
            self.timers.append(threading.Timer(planned * 0.45, self._once, ("payments_outage", outage)))

    def _kill_every_node(self):
        """Each node of the cluster in turn, each once: first the node holding the orchestrators'
        exclusive mailbox queues (their connections are on it), then the leader of saga.replies,
        then the rest; each time, what the node is at that moment (the processes move with every
        kill). The next kill waits until the node before is back, has rejoined and every quorum
        queue has caught up on it, so a majority of every queue's replicas is always up."""
        from tests.support import rabbit_cluster

        left = list(range(1, rabbit_cluster.NODES + 1))
        while left:
            # The first kill is the mailboxes' node. An orchestrator the monkey just SIGKILLed has no
            # mailbox until it is back (both may be restarting on a loaded machine): wait for one.
            deadline = time.time() + (MAILBOX_WAIT if len(left) == rabbit_cluster.NODES else 0)
            while True:
                try:
                    node, why = self._next_node(left)
                except Exception as exc:  # the management API did not answer: any node left
                    node, why = left[0], f"a node not yet killed (its roles unknown: {exc!r:.100})"
                if "mailboxes" in why or time.time() >= deadline:
                    break
                time.sleep(1)
            left.remove(node)
            self._kill_node(node, why)

    def _next_node(self, left):
        """The node to kill next, of `left`, and what it is: the orchestrators' mailbox node, then
        saga.replies's leader, then any."""
        from tests.support import rabbit_cluster

        queues = rabbit_cluster.queues(VHOST)
        mailboxes = sorted({rabbit_cluster.node_index(q["node"]) for q in queues
                            if q["name"].startswith("orchestrator-") and ".celery.pidbox" in q["name"]})
        leads = defaultdict(list)
        for queue in queues:
            if queue.get("type") == "quorum" and queue.get("leader"):
                leads[rabbit_cluster.node_index(queue["leader"])].append(queue["name"])

        def roles(node):
            found = []
            if node in mailboxes:
                found.append("holds the orchestrators' mailboxes")
            if "saga.replies" in leads[node]:
                found.append("saga.replies's leader")
            if "payments.commands" in leads[node]:
                found.append("payments.commands's leader")
            return ", ".join(found) or f"leads {len(leads[node])} quorum queues"

        for wanted in ("holds the orchestrators' mailboxes", "saga.replies's leader"):
            for node in left:
                if wanted in roles(node):
                    return node, roles(node)
        return left[0], roles(left[0])

    def _kill_node(self, node, why):
        """SIGKILL `node`, wait for the quorum queues' leaders to move off it, keep it down for
        --node-down seconds, start it again and wait until it has rejoined and caught up."""
        from tests.support import rabbit_cluster

        name = rabbit_cluster.node_name(node)
        try:
            say(f"SIGKILL RabbitMQ node {name}: {why}")
            killed_at = time.time()
            rabbit_cluster.kill(node)
            moved = wait_until(lambda: rabbit_cluster.leaders_settled(VHOST, down=(node,)), self.args.node_down + 30,
                               f"the quorum leaders to move off {name}")
            moved_after = time.time() - killed_at
            time.sleep(max(0.0, killed_at + self.args.node_down - time.time()))
            rabbit_cluster.restart(node)
            rejoined = wait_until(lambda: len(rabbit_cluster.cluster_members()) == rabbit_cluster.NODES
                                  and rabbit_cluster.leaders_settled(VHOST), 120, f"{name} to rejoin and catch up")
            back = time.time() - killed_at
            say(f"RabbitMQ node {name} is back after {back:.0f}s")
            self.node_kills.append((node, killed_at, f"{name} ({why}), leaders moved "
                                                     f"{f'after {moved_after:.1f}s' if moved else 'NOT'}, "
                                                     f"rejoined {f'after {back:.0f}s' if rejoined else 'NOT'}"))
            if not (moved and rejoined):
                self.errors.append(f"node kill {name}: leaders moved {moved}, rejoined {rejoined}")
        except Exception as exc:  # report it in the table rather than crash the run
            self.errors.append(f"node kill {name}: {exc!r}")

    def _once(self, attribute, fault):
        try:
            setattr(self, attribute, fault())
        except Exception as exc:  # report it in the table rather than crash the run
            setattr(self, attribute, f"failed: {exc!r}")

    def run(self):
        for timer in self.timers:
            timer.start()
        while not self.stop.wait(self.args.kill_every):
            try:
                victim = self.rng.choice(self.victims)
                self.cluster.restart(victim)
                self.kills[victim.rsplit("-", 1)[0]] += 1
            except Exception as exc:  # keep the monkey going; report what failed
                self.errors.append(repr(exc))

    def finish(self):
        self.stop.set()
        self.join()
        for timer in self.timers:
            timer.join()


def restart_broker():
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return "skipped: rabbitmqctl not on this machine"
    say("restarting RabbitMQ (stop_app, start_app)")
    subprocess.run([ctl, "stop_app"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([ctl, "start_app"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([ctl, "await_startup"], check=True, stdout=subprocess.DEVNULL)
    return "done"


def terminate_backends():
    from django.db import connection

    say("terminating every PostgreSQL backend of the chaos databases")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname LIKE %s AND pid <> pg_backend_pid()", [DB_PREFIX + "%"],
        )
        count = cursor.fetchone()[0]
    say(f"terminated {count} PostgreSQL backends")
    return f"done ({count} backends)"


def payments_database_outage(seconds):
    """The payments database refuses every connection for `seconds`: its open connections are
    terminated and new ones are refused (the provider's ledger lives there too). Each statement
    runs on a connection of its own, so the other faults (terminated backends) cannot leave the
    database closed."""
    name = DB_PREFIX + "payments"
    say(f"the payments database is unreachable for {seconds:.0f}s")
    allow_connections(name, False)
    try:
        admin_sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", [name])
        time.sleep(seconds)
    finally:
        allow_connections(name, True)
    say("the payments database is back")
    return f"done ({seconds:.0f}s)"


def allow_connections(database, allowed: bool):
    admin_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}')


def admin_sql(sql, params=None, attempts=20):
    """One statement on a fresh connection to the server's `postgres` database, retried."""
    import psycopg2
    from django.conf import settings

    db = settings.DATABASES["default"]
    for attempt in range(attempts):
        try:
            connection = psycopg2.connect(dbname="postgres", user=db["USER"], password=db["PASSWORD"],
                                          host=db["HOST"], port=db["PORT"], connect_timeout=5)
            try:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                return
            finally:
                connection.close()
        except psycopg2.Error:
            if attempt + 1 == attempts:
                raise
            time.sleep(0.5)


# --- quiet and the invariants -----------------------------------------------------------------
def probe_lone_orders(client, count):
    """Place `count` tok_ok orders one at a time through the API and time each, POST to completed."""
    from django.db import close_old_connections

    from orderhub.orders.models import Order

    latencies, statuses = [], Counter()
    body = {"items": [{"sku": "CH-000", "quantity": 1}], "payment_token": "tok_ok",
            "shipping_address": {"name": "Probe", "line1": "1 Loop Rd", "city": "Localhost",
                                 "postal_code": "127001", "country": "GB"}}
    for _ in range(count):
        started = time.monotonic()
        order_id = client.call("POST", "/api/orders/", json=body).json()["id"]

        def ended():
            close_old_connections()
            return Order.objects.filter(id=order_id).exclude(status="pending").values_list("status", flat=True).first()

        status = None
        while status is None and time.monotonic() - started < 30:
            status = ended() or time.sleep(0.01)
        statuses[status or "pending"] += 1
        latencies.append((time.monotonic() - started) * 1000)
    latencies.sort()
    return (f"{count}: p50 {latencies[len(latencies) // 2]:.0f} ms, max {latencies[-1]:.0f} ms, "
            f"{dict(statuses)}")


def settled(order_ids):
    from django.db import close_old_connections

    from orderhub.orders.models import Order
    from sagas.models import OutboxMessage

    close_old_connections()
    open_orders = Order.objects.filter(id__in=order_ids).exclude(status__in=TERMINAL).count()
    return open_orders == 0 and not OutboxMessage.objects.filter(published_at__isnull=True).exists()


def dead_letter_queues_empty(env):
    from orderhub import rabbitmq_api

    queues = rabbitmq_api.get(f"queues/{VHOST}", timeout=10).json()
    return all(q.get("messages", 0) == 0 for q in queues if q["name"].endswith(".dlq"))


def expected_dead_letters(placed, poison_keys):
    """The message keys the archive must hold: the injected malformed messages, the void of every
    tok_void_broken order whose compensation failed (its retries are exhausted by design), and
    every command a worker answered `unknown` and dead-lettered because it could not record that
    answer (its database was unreachable: the payments outage)."""
    from orderhub.orders.models import Order
    from sagas.models import SagaEvent

    broken = Order.objects.filter(id__in=[oid for oid, name in placed.items() if name == "void_broken"],
                                  status="needs_attention").values_list("saga_id", flat=True)
    voids = SagaEvent.objects.filter(kind="command", message_type="payments.void", saga_id__in=list(broken))
    return set(poison_keys) | {str(m) for m in voids.values_list("message_id", flat=True)} | unrecorded_unknowns()


def unrecorded_unknowns():
    from sagas.models import SagaEvent

    # However the saga took the answer: awaited, a copy, or late (its step's deadline had already
    # stood: a tok_slow authorization caught by the payments outage answers after it).
    answers = SagaEvent.objects.filter(kind__in=["reply", "stale_reply", "late_reply"], body__outcome="unknown",
                                       body__data__dead_lettered=True)
    return {body["in_reply_to"] for body in answers.values_list("body", flat=True)}


def archive_caught_up(env, placed, poison_keys):
    from django.db import close_old_connections

    from orderhub.deadletters.models import DeadLetter

    close_old_connections()
    archived = set(DeadLetter.objects.values_list("message_key", flat=True))
    return expected_dead_letters(placed, poison_keys) <= archived and dead_letter_queues_empty(env)


def check_invariants(placed, initial, poison_keys, poison_label="malformed"):
    from django.db.models import Count, Sum

    from orderhub.deadletters.models import DeadLetter
    from orderhub.orders.models import Order
    from sagas.models import OutboxMessage, SagaEvent, SagaInstance, SagaStep
    from workers.inventory.models import Inbox as InventoryInbox
    from workers.inventory.models import Reservation, StockItem
    from workers.notifications.models import Inbox as NotificationsInbox
    from workers.notifications.models import Notification
    from workers.payments.models import Inbox as PaymentsInbox
    from workers.payments.models import Payment, ProviderCharge
    from workers.shipping.models import Inbox as ShippingInbox
    from workers.shipping.models import Shipment

    orders = {str(o.id): o for o in Order.objects.filter(id__in=list(placed))}
    sagas = {str(s.id): s for s in SagaInstance.objects.all()}
    results = []

    # I1: every order ended; needs_attention only for tok_void_broken.
    problems = [f"{oid} {o.status}" for oid, o in orders.items() if o.status not in TERMINAL]
    problems += [f"{oid} needs_attention ({placed[oid]})" for oid, o in orders.items()
                 if o.status == "needs_attention" and placed[oid] != "void_broken"]
    problems += [f"{len(placed) - len(orders)} placed orders are missing"] if len(orders) != len(placed) else []
    results.append(("I1", "every order ended; needs_attention only for tok_void_broken", problems))

    # I2: initial stock = available + reserved by open sagas + shipped (reservations of completed).
    open_or_shipped = {"completed", "running", "compensating", "compensation_failed"}
    held = defaultdict(int)
    problems = []
    for reservation in Reservation.objects.filter(status="reserved"):
        saga = sagas.get(str(reservation.saga_id))
        if saga is None or saga.status not in open_or_shipped:
            problems.append(f"reservation of saga {reservation.saga_id} ({saga and saga.status}) is still held")
        for line in reservation.lines:
            held[line["sku"]] += line["quantity"]
    for item in StockItem.objects.all():
        if item.available < 0 or initial[item.sku] != item.available + held[item.sku]:
            problems.append(f"{item.sku}: initial {initial[item.sku]} != available {item.available} + held "
                            f"{held[item.sku]}")
    results.append(("I2", "stock: initial = available + reserved by open sagas + shipped", problems))

    # I3: captured = totals of completed orders; one capture and one authorization per order; the
    # provider's ledger agrees with the payments service.
    completed_total = sum((o.total for o in orders.values() if o.status == "completed"), Decimal("0"))
    captured = Payment.objects.filter(status="captured").aggregate(s=Sum("amount"))["s"] or Decimal("0")
    ledger = ProviderCharge.objects.filter(status="captured").aggregate(s=Sum("amount"))["s"] or Decimal("0")
    problems = []
    if not (captured == ledger == completed_total):
        problems.append(f"captured {captured}, provider ledger {ledger}, completed orders {completed_total}")
    per_saga = Counter(key.split(":")[0] for key in ProviderCharge.objects.values_list("idempotency_key", flat=True))
    problems += [f"saga {saga} has {n} provider authorizations" for saga, n in per_saga.items() if n > 1]
    payment_refs = set(Payment.objects.filter(status="captured").values_list("provider_ref", flat=True))
    ledger_refs = set(ProviderCharge.objects.filter(status="captured").values_list("ref", flat=True))
    if payment_refs != ledger_refs:
        problems.append(f"captured refs differ: {len(payment_refs ^ ledger_refs)}")
    for held in ProviderCharge.objects.filter(status="authorized"):
        saga = sagas.get(held.idempotency_key.split(":")[0])
        if saga is None or saga.status != "compensation_failed":
            problems.append(f"authorization {held.ref} left open for saga {held.idempotency_key.split(':')[0]} "
                            f"({saga and saga.status})")
    completed_sagas = {str(o.saga_id) for o in orders.values() if o.status == "completed"}
    captured_sagas = {str(s) for s in Payment.objects.filter(status="captured").values_list("saga_id", flat=True)}
    if captured_sagas != completed_sagas:
        problems.append(f"{len(captured_sagas ^ completed_sagas)} sagas captured without completing or vice versa")
    results.append(("I3", "captured = completed totals; 1 capture/auth per order; ledger agrees; no stray hold",
                    problems))

    # I4: every outbox row published; no saga waits on a command that was never sent.
    problems = [f"{n} outbox rows unpublished"
                for n in [OutboxMessage.objects.filter(published_at__isnull=True).count()] if n]
    waiting = SagaStep.objects.filter(status__in=["running", "compensating"]).values_list("message_id", flat=True)
    sent = set(OutboxMessage.objects.filter(published_at__isnull=False).values_list("id", flat=True))
    problems += [f"step waits on unsent {m}" for m in waiting if m not in sent]
    results.append(("I4", "every outbox row published; no saga waits on an unsent command", problems))

    # I5: every command had at most one effect.
    problems = []
    for model in (Reservation, Payment, Shipment, Notification):
        dupes = model.objects.values("saga_id").annotate(n=Count("id")).filter(n__gt=1).count()
        if dupes:
            problems.append(f"{dupes} sagas with more than one {model.__name__}")
    for inbox in (InventoryInbox, PaymentsInbox, ShippingInbox, NotificationsInbox):
        unanswered = inbox.objects.filter(reply__isnull=True).count()
        if unanswered:
            problems.append(f"{unanswered} {inbox._meta.app_label} inbox rows without a reply")
    for order in orders.values():
        if order.status == "completed":
            saga = order.saga_id
            counts = (Reservation.objects.filter(saga_id=saga, status="reserved").count(),
                      Shipment.objects.filter(saga_id=saga, status="created").count(),
                      Notification.objects.filter(saga_id=saga).count())
            if counts != (1, 1, 1):
                problems.append(f"completed order {order.id}: reservation/shipment/notification {counts}")
    results.append(("I5", "every command had at most one effect", problems))

    # I6: the archive holds exactly the poison the suite injected: the malformed messages, and the
    # voids of tok_void_broken orders, which exhaust their retries by design.
    exhausted_voids = expected_dead_letters(placed, [])
    archived = set(DeadLetter.objects.values_list("message_key", flat=True))
    expected = set(poison_keys) | exhausted_voids
    problems = []
    if archived != expected:
        problems.append(f"unexpected: {sorted(archived - expected)[:5]} missing: {sorted(expected - archived)[:5]}")
    results.append(("I6", f"dead-letter archive = injected poison ({len(poison_keys)} {poison_label} + "
                          f"{len(exhausted_voids)} exhausted voids and unrecorded unknowns)", problems))
    return results


def projection_matches():
    """I9: the sales projection, fed by order events through every fault, equals a rebuild from the
    orders (waiting for it to apply what is still in its queue)."""
    from django.db import close_old_connections

    from orderhub.reports import projection

    def same():
        close_old_connections()
        return projection.from_projection() == projection.from_orders()

    if wait_until(same, 60, "the sales projection to equal a rebuild"):
        return ("I9", "the sales projection equals a rebuild from the orders", [])
    held, truth = projection.from_projection(), projection.from_orders()
    return ("I9", "the sales projection equals a rebuild from the orders",
            [f"{part}: projection {held[part]!s:.200} / orders {truth[part]!s:.200}"
             for part in ("by_day", "by_sku", "by_outcome") if held[part] != truth[part]])


def webhooks_delivered(receiver, placed):
    """I10: the client's webhook receiver (loopback, the verification code of docs/api.md) got every
    order's final state, each correctly signed; nothing for an order it does not own."""
    from django.db import close_old_connections

    from orderhub.orders.models import Order

    def missing():
        close_old_connections()
        final = dict(Order.objects.filter(id__in=list(placed)).values_list("id", "status"))
        got = {(event["data"]["order_id"], event["type"]) for _, event in receiver.events()}
        return [f"order {order_id}: no order.{status}" for order_id, status in final.items()
                if (str(order_id), f"order.{status}") not in got]

    wait_until(lambda: not missing(), 90, "every final state at the webhook receiver")
    problems = missing()
    problems += [f"refused: {why}" for why in receiver.refused[:5]]
    problems += [f"an event for an order not placed here: {event['data']['order_id']}"
                 for _, event in receiver.events() if event["data"]["order_id"] not in placed][:5]
    copies = Counter(event_id for event_id, _ in receiver.events())
    twice = sum(1 for n in copies.values() if n > 1)
    return ("I10", f"every final state delivered to the client's webhook, signed ({len(copies)} events, "
                   f"{twice} more than once)", problems)


def print_table(results, outcomes, facts):
    print()
    print(f"{'':4}{'invariant':78} result")
    for code, title, problems in results:
        print(f"{code:4}{title:78} {'ok' if not problems else f'VIOLATED ({len(problems)})'}")
        for problem in problems[:5]:
            print(f"{'':8}{problem}")
    print()
    for name, value in facts:
        print(f"  {name:28} {value}")
    print(f"  {'outcomes':28} {dict(sorted(outcomes.items()))}")


def accepted_to_ended(placed):
    """p50, p99 and max of the accepted orders' accepted→ended time (created_at to the update that
    ended them), in seconds: what admission control holds near its target while the load lasts."""
    from orderhub.orders.models import Order

    waits = sorted((ended - created).total_seconds() for created, ended in Order.objects.filter(
        id__in=list(placed)).exclude(status="pending").values_list("created_at", "updated_at"))
    if not waits:
        return "none ended"
    p99 = waits[min(len(waits) - 1, math.ceil(0.99 * len(waits)) - 1)]
    return f"p50 {statistics.median(waits):.1f} s, p99 {p99:.1f} s, max {waits[-1]:.1f} s"


def longest_pause_after(moment, placing_ended, window=30.0):
    """The longest stretch, in the `window` seconds after `moment` while orders were still being
    placed, in which no order ended: what a node loss cost the flow (Order.updated_at is when an
    order last changed, i.e. ended). Once placing stops, endings thin out by themselves."""
    from datetime import UTC, datetime, timedelta

    from orderhub.orders.models import Order

    window = min(window, placing_ended - moment)
    if window < 5:
        return None
    start = datetime.fromtimestamp(moment, UTC)
    ended = sorted(Order.objects.filter(updated_at__gte=start - timedelta(seconds=5),
                                        updated_at__lte=start + timedelta(seconds=window),
                                        status__in=TERMINAL).values_list("updated_at", flat=True))
    marks = [start, *[t for t in ended if t >= start], start + timedelta(seconds=window)]
    gaps = [(b - a).total_seconds() for a, b in zip(marks, marks[1:], strict=False)]
    return max(gaps) if gaps else window


def pause_text(pause):
    if pause is None:
        return "killed as placing ended: no pause measured"
    return f"longest pause in order endings within 30 s of it {pause:.1f}s"


def start_rabbit_cluster():
    from tests.support import rabbit_cluster

    say("starting a three-node RabbitMQ cluster (tests/support/rabbit_cluster.py)")
    members = rabbit_cluster.start()
    say(f"RabbitMQ cluster running: {', '.join(members)}")
    os.environ["ORDERHUB_CHAOS_BROKER_URL"] = rabbit_cluster.broker_url(VHOST)
    os.environ["ORDERHUB_RABBITMQ_MANAGEMENT_URL"] = rabbit_cluster.management_url()
    return rabbit_cluster


def main(argv=None):
    args = parse_args(argv)
    seed_value = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed_value)
    rabbit = None
    if args.rabbit_cluster:
        args.no_broker_restart = True  # the node kills replace the single broker's restart
        rabbit = start_rabbit_cluster()
    env = chaos_env()
    os.environ.update({k: env[k] for k in env if k.startswith("ORDERHUB_") or k == "DJANGO_SETTINGS_MODULE"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    run_started = time.monotonic()
    say(f"seed {seed_value}: {args.orders} orders at {args.rate}/s, a SIGKILL every {args.kill_every}s")
    reset_world(env)
    from tests.support.webhook_receiver import Receiver

    receiver = Receiver()
    initial, token, receiver.secret = seed(rng, receiver.url)
    cluster, victims = start_cluster(env, args)
    stop = threading.Event()
    monkey = Monkey(cluster, victims, args, rng, stop)
    try:
        client = Client(f"http://{env['ORDERHUB_API_BIND']}", token)
        if not wait_until(lambda: api_healthy(client), 60, "the api"):
            why_the_api_is_down(client, cluster)
            return 2
        monkey.start()
        placing_started = time.monotonic()
        from orderhub.celery_consumer import malformed_ticks

        ticks_before, injected = malformed_ticks(), []
        poisoner = threading.Thread(target=poison_during, args=(env, args, rng, placing_started, injected),
                                    daemon=True)
        poisoner.start()
        placed = place_orders(client, args, rng, sorted(k for k in initial if k != "CH-SCARCE"))
        poisoner.join()
        poison_keys = archived_poison(injected)
        poisoned_ticks = len(injected) - len(poison_keys)
        placing_took = time.monotonic() - placing_started
        placing_ended = time.time()
        say(f"placed {len(placed)} orders in {placing_took:.0f}s; waiting for quiet")
        monkey.finish()
        budget = min(args.settle_timeout, args.time_limit - (time.monotonic() - run_started))
        quiet = wait_until(lambda: settled(list(placed)), budget, "every order to end")
        drained_after = time.monotonic() - placing_started - placing_took
        wait_until(lambda: archive_caught_up(env, placed, poison_keys), 60, "the dead-letter archive")
        results = check_invariants(placed, initial, poison_keys)
        counted = malformed_ticks() - ticks_before
        results.append(("I7", f"every malformed tick dropped and counted ({poisoned_ticks} injected, {counted} counted)",
                        [] if counted >= poisoned_ticks else [f"{poisoned_ticks - counted} ticks not counted"]))
        from orderhub.orders.models import Order

        timed_out = Counter(placed[str(order_id)] for order_id in Order.objects.filter(
            id__in=list(placed), failure_reason="deadline_exceeded").values_list("id", flat=True))
        results.append(("I8", "no order failed by a deadline but tok_slow's (a deadline measures silence, not load)",
                        [f"{count} {scenario} orders deadline_exceeded" for scenario, count in sorted(timed_out.items())
                         if scenario != "slow"]))
        results.append(projection_matches())
        results.append(webhooks_delivered(receiver, placed))
        if not quiet:
            results.append(("--", "the run settled within its time limit", ["did not settle"]))
        unrecoverable = cluster.log_lines("Unrecoverable error")
        results.append(("--", "no process gave up on a broker or database event (\"Unrecoverable error\")",
                        [f"{name}: {line.strip()[:300]}" for name, line in unrecoverable]))
        respawned = [name for name, line in cluster.log_lines("respawn: ") if " exited with code " in line]
        if rabbit and len(monkey.node_kills) != rabbit.NODES:
            results.append(("--", f"each of the {rabbit.NODES} RabbitMQ nodes was killed and restarted",
                            [f"{len(monkey.node_kills)} were", *monkey.errors[:3]]))

        outcomes = Counter(Order.objects.filter(id__in=list(placed)).values_list("status", flat=True))
        reasons = Counter(Order.objects.filter(id__in=list(placed), failure_reason__isnull=False)
                          .values_list("failure_reason", flat=True))
        # After the invariants, which count only the orders placed above.
        probe = probe_lone_orders(client, args.probe) if args.probe and quiet else None
        facts = [
            ("orders", len(placed)),
            ("placing took", f"{placing_took:.0f}s"),
            ("whole run took", f"{time.monotonic() - run_started:.0f}s"),
            ("SIGKILLs", f"{sum(monkey.kills.values())} {dict(monkey.kills)}"),
            ("exited, restarted (respawn)", f"{len(respawned)} {dict(Counter(respawned))}"),
            *([("RabbitMQ restart", monkey.broker_restarted)] if not rabbit else []),
            *[(f"RabbitMQ node kill {n}", f"{what}; {pause_text(longest_pause_after(at, placing_ended))}")
              for n, (_, at, what) in enumerate(monkey.node_kills, 1)],
            *([("RabbitMQ node kills", f"{len(monkey.node_kills)} of {rabbit.NODES}")] if rabbit else []),
            ("PostgreSQL backends", monkey.db_terminated),
            ("payments DB outage", monkey.payments_outage),
            ("poison injected", f"{len(injected)} ({len({q for q, _ in injected})} queues)"),
            ("monkey errors", monkey.errors[:3] or "none"),
            ("refused at the door (503)", client.refused),
            ("quiet after the last order", f"{drained_after:.0f}s"),
            ("accepted→ended", accepted_to_ended(placed)),
            *([("lone orders after the load", probe)] if probe else []),
            ("seed", seed_value),
            ("failure reasons", dict(sorted(reasons.items()))),
        ]
        print_table(results, outcomes, facts)
        violated = any(problems for _, _, problems in results)
        print("\nchaos:", "VIOLATIONS" if violated else "0 violations")
        return 1 if violated else 0
    finally:
        stop.set()
        cluster.stop_all()
        if rabbit:
            rabbit.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
