"""`make bench`: OrderHub's saga path measured beside a plain Celery chain, in the same run.

It builds its own world (databases `bench_*`, vhosts `orderhub_bench`, `orderhub_bench_chain` and
`orderhub_bench_guarded`, Redis db 3), starts the processes as `make run` does (its Procfile's commands and defaults), and:

- places orders one at a time (a lone saga's latency), then a burst at full speed through the
  service the API calls (`order_place`), then a burst through the REST API;
- runs the lone and burst loads on two baseline chains (tests/bench/chain.py): a plain Celery chain,
  and a guarded one (quorum queues, persistent messages, publisher confirms, acks_late with
  reject-on-worker-lost, an inbox row per step);
- prints sagas/s, accepted->completed latency p50/p95/p99, messages per saga, database commits per
  saga (all, writing ones counted by xids, and WAL fsyncs), CPU ms per saga by process (PostgreSQL,
  RabbitMQ, Redis and this load generator included), peak RSS per process, and OrderHub's figures as
  ratios to each chain's;
- then restarts OrderHub with OpenTelemetry tracing on (OTLP to a receiver in the bench process) and
  repeats the REST API loads, printing what tracing costs beside the same loads with it off
  (`--no-tracing` skips this pass);
- writes the figures as JSON under var/bench-results/.

Everything runs on this machine over loopback, bounded by --time-limit."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
VHOST, DB_PREFIX = "orderhub_bench", "bench_"
# The two baselines (tests/bench/chain.py), each with its own vhost and database.
CHAINS = {"plain": {"vhost": "orderhub_bench_chain", "db": DB_PREFIX + "chain", "guarded": False},
          "guarded": {"vhost": "orderhub_bench_guarded", "db": DB_PREFIX + "guarded", "guarded": True}}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCESSES = ["orchestrator", "inventory", "payments", "shipping", "notifications", "beat", "deadletters", "projections",
             "webhooks", "api"]
# The same default as the Makefile's CONCURRENCY for `make run`.
DEFAULT_CONCURRENCY = "orchestrator=2,payments=2"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=300, help="orders in each burst")
    parser.add_argument("--lone", type=int, default=20, help="orders placed one at a time")
    parser.add_argument("--threads", type=int, default=8, help="client threads in a burst")
    parser.add_argument("--settle-timeout", type=float, default=180.0)
    parser.add_argument("--no-tracing", dest="tracing", action="store_false",
                        help="skip the second pass with OpenTelemetry tracing on")
    parser.add_argument("--rabbit-cluster", action="store_true",
                        help="both systems on a three-node RabbitMQ cluster of their own (tests/support/rabbit_cluster.py) "
                             "instead of this machine's broker")
    parser.add_argument("--profile", default="", metavar="PROCESSES",
                        help="comma-separated processes (orchestrator-1,payments-1,...) to sample with py-spy "
                             "during the service burst, counting only threads holding the GIL (CPU, not waits); "
                             "prints each one's top functions")
    parser.add_argument("--batch-sizes", default="1,10,50", metavar="SIZES",
                        help="ORDERHUB_REPLY_BATCH values for the batch-size table (lone p50 and service burst "
                             "at each, OrderHub restarted for each); empty: no table")
    parser.add_argument("--orchestrators", default="1,2", metavar="COUNTS",
                        help="orchestrator counts for the scale-out table (each with the other processes as "
                             "--concurrency says, the default batch size); empty: no table")
    parser.add_argument("--concurrency", default=DEFAULT_CONCURRENCY,
                        help="how many of each process, as `make run` takes it (honcho's -c)")
    return parser.parse_args(argv)


def say(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(rabbit_cluster=None):
    """The bench's environment; with `rabbit_cluster` (tests/support/rabbit_cluster.py, started),
    every process connects to its three nodes."""
    base = "amqp://guest:guest@127.0.0.1:5672/"
    url = rabbit_cluster.broker_url if rabbit_cluster else (lambda vhost: base + vhost)
    brokers = {"ORDERHUB_BROKER_URL": url(VHOST)}
    for kind, spec in CHAINS.items():
        spec["broker"], spec["dsn"] = url(spec["vhost"]), f"dbname={spec['db']} host=127.0.0.1 user=postgres"
    if rabbit_cluster:
        brokers["ORDERHUB_RABBITMQ_MANAGEMENT_URL"] = rabbit_cluster.management_url()
    return os.environ | brokers | {
        "DJANGO_SETTINGS_MODULE": "orderhub.settings",
        "ORDERHUB_DB_PREFIX": DB_PREFIX,
        "ORDERHUB_REDIS_URL": "redis://127.0.0.1:6379/3",
        "ORDERHUB_THROTTLE_RATE": "1000000/min",
        "ORDERHUB_API_BIND": f"127.0.0.1:{free_port()}",
        "ORDERHUB_API_WORKERS": "2",
        "PYTHONUNBUFFERED": "1",
    }


# --- the world --------------------------------------------------------------------------------
def management():
    from django.conf import settings

    return settings.RABBITMQ_MANAGEMENT_URL.split(";")[0].rstrip("/")


def reset_world(env):
    import psycopg2

    for vhost in [VHOST] + [spec["vhost"] for spec in CHAINS.values()]:
        requests.delete(f"{management()}/vhosts/{vhost}", timeout=30)
        requests.put(f"{management()}/vhosts/{vhost}", timeout=30).raise_for_status()
        requests.put(f"{management()}/permissions/{vhost}/guest",
                     json={"configure": ".*", "write": ".*", "read": ".*"}, timeout=30).raise_for_status()
    manage = [sys.executable, "manage.py"]
    subprocess.run(manage + ["setup_databases"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    for alias in ("default", "inventory", "payments", "shipping", "notifications"):
        subprocess.run(manage + ["flush", "--no-input", "--database", alias], cwd=ROOT, env=env, check=True)
    subprocess.run(manage + ["declare_topology"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    admin = psycopg2.connect(dbname="postgres", host="127.0.0.1", user="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        for spec in CHAINS.values():
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [spec["db"]])
            if not cursor.fetchone():
                cursor.execute(f'CREATE DATABASE "{spec["db"]}"')
    admin.close()
    from tests.bench import chain

    for spec in CHAINS.values():
        chain_db = psycopg2.connect(spec["dsn"])
        with chain_db, chain_db.cursor() as cursor:
            cursor.execute(chain.SCHEMA)
        chain_db.close()


def seed():
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from orderhub.apikeys.services import key_create

    from orderhub.orders.models import Product
    from workers.inventory.models import StockItem

    Product.objects.create(sku="SKU-BENCH", name="Bench item", price=Decimal("10.00"))
    StockItem.objects.create(sku="SKU-BENCH", available=100_000_000)
    client = get_user_model().objects.create(username=f"bench-{uuid.uuid4().hex[:6]}")
    return client, key_create(client=client, name="bench")[1]


def start_orderhub(env, concurrency=DEFAULT_CONCURRENCY):
    from tests.support.cluster import Cluster

    counts = {name: int(count) for name, count in (pair.split("=") for pair in concurrency.split(",") if pair)}
    cluster = Cluster(env, ROOT / "var" / "bench-logs")
    for log in cluster.log_dir.glob("*.log"):
        log.unlink()
    for name in PROCESSES:
        for index in range(1, counts.get(name, 1) + 1):
            cluster.start(name, index=index)
    return cluster


def start_chain_worker(env, log_dir, kind):
    spec = CHAINS[kind]
    log = open(log_dir / f"chain-{kind}-worker.log", "ab")
    env = env | {"BENCH_CHAIN_BROKER_URL": spec["broker"], "BENCH_CHAIN_DSN": spec["dsn"],
                 "BENCH_CHAIN_GUARDED": "1" if spec["guarded"] else "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.bench.chain", "worker", "-P", "prefork", "-c", "2",
         "--prefetch-multiplier", "1", "-n", f"bench-{kind}@%h", "--without-gossip", "--without-mingle", "-l",
         "WARNING"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def chain_app(kind):
    from tests.bench import chain

    spec = CHAINS[kind]
    if "app" not in spec:
        spec["app"] = chain.make_app(spec["guarded"], spec["broker"], spec["dsn"])
    return spec["app"]


# --- profiles ---------------------------------------------------------------------------------
class Profiles:
    """py-spy sampling named processes (and their children) while a load runs: CPU samples only
    (`--gil`), written as collapsed stacks to var/bench-logs/profile-<name>.txt."""

    def __init__(self, cluster, names):
        self.cluster, self.names, self.procs = cluster, [name for name in names if name], {}

    def __enter__(self):
        for name in self.names:
            path = self.cluster.log_dir / f"profile-{name}.txt"
            self.procs[name] = (path, subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--gil", "--subprocesses", "-r", "250",
                 "-f", "raw", "-o", str(path), "-p", str(self.cluster.procs[name].pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc):
        import signal

        for _, proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        for _, proc in self.procs.values():
            proc.wait(timeout=60)

    def report(self, top=15):
        for name, (path, _) in self.procs.items():
            own, inclusive, total = {}, {}, 0
            for line in path.read_text().splitlines() if path.exists() else []:
                stack, _, count = line.rpartition(" ")
                # a function, not a line of it: "name (path:line)" -> "name (path)"
                frames, count = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")], int(count)
                total += count
                own[frames[-1]] = own.get(frames[-1], 0) + count
                for frame in set(frames):
                    if any(part in frame for part in ("orderhub/", "sagas/", "workers/", "contracts/")):
                        inclusive[frame] = inclusive.get(frame, 0) + count
            print(f"\nprofile of {name} during the service burst ({total} CPU samples at 250/s):")
            for label, table in (("own time", own), ("inclusive, OrderHub's code", inclusive)):
                print(f"  {label}:")
                for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
                    print(f"    {100 * count / max(total, 1):5.1f}%  {frame.replace(str(ROOT) + '/', '')[:140]}")


# --- counters ---------------------------------------------------------------------------------
def tree(pid):
    """pid and all its descendants."""
    pids, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split() if Path(
                f"/proc/{parent}/task/{parent}/children").exists() else []:
            pids.add(int(child))
            frontier.append(int(child))
    return pids


def cpu_seconds(pids):
    """User and system CPU of these processes and of their children that have exited (a PostgreSQL
    backend that came and went is counted in the postmaster's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(field) for field in fields[11:15])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total / CLK_TCK


def status_mb(pids, field):
    """One memory field of /proc/<pid>/status (VmHWM, VmRSS), in MB, for each process still there."""
    values = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    values.append(int(line.split()[1]) / 1024)
        except FileNotFoundError:
            pass
    return values


def peak_rss_mb(pids):
    return round(max(status_mb(pids, "VmHWM"), default=0), 1)


def pids_named(*names):
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.add(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def process_groups(processes):
    """name -> pids, every process of the system under test plus PostgreSQL and RabbitMQ."""
    groups = {name: tree(pid) for name, pid in processes.items()}
    groups["postgres"] = pids_named("postgres")
    groups["rabbitmq"] = pids_named("beam.smp", "erl_child_setup", "epmd")
    groups["redis"] = pids_named("redis-server")
    groups["load-generator"] = {os.getpid()}  # this process: the clients' threads, and its polling
    return groups


# RabbitMQ's management API refreshes its message counts every 5 s; an idle PostgreSQL backend
# reports its commits to pg_stat_database within 10 s.
STATS_INTERVAL = 11


def snapshot(groups, vhost, databases):
    import psycopg2

    time.sleep(STATS_INTERVAL)
    stats = requests.get(f"{management()}/vhosts/{vhost}", timeout=10).json().get("message_stats", {})
    connection = psycopg2.connect(dbname="postgres", host="127.0.0.1", user="postgres")
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database WHERE datname = ANY(%s)",
                       [list(databases)])
        commits = int(cursor.fetchone()[0])
        # A transaction gets an xid only when it writes, so the xid counter counts writing commits
        # (and aborts; server-wide, but only the bench runs); pg_stat_wal counts WAL fsyncs.
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, wal_sync FROM pg_stat_wal")
        xids, wal_syncs = cursor.fetchone()
    connection.close()
    # The postgres group's CPU is read afresh each time: backends come and go.
    cpu = {name: cpu_seconds(pids_named("postgres") if name == "postgres" else pids) for name, pids in groups.items()}
    return {"published": stats.get("publish", 0), "commits": commits, "xids": int(xids), "wal_syncs": int(wal_syncs),
            "cpu": cpu}


def per_saga(before, after, sagas):
    return {
        "messages_per_saga": round((after["published"] - before["published"]) / sagas, 1),
        "commits_per_saga": round((after["commits"] - before["commits"]) / sagas, 1),
        "writing_commits_per_saga": round((after["xids"] - before["xids"]) / sagas, 1),
        "wal_fsyncs_per_saga": round((after["wal_syncs"] - before["wal_syncs"]) / sagas, 1),
        "cpu_ms_per_saga": {name: round(1000 * (after["cpu"][name] - before["cpu"][name]) / sagas, 1)
                            for name in after["cpu"]},
    }


def percentiles(values):
    values = sorted(values)
    if not values:
        return {}
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"p50": round(pick(0.5) * 1000, 1), "p95": round(pick(0.95) * 1000, 1), "p99": round(pick(0.99) * 1000, 1)}


# --- OrderHub loads ---------------------------------------------------------------------------
ADDRESS = {"name": "Bench", "line1": "1 Loop Rd", "city": "Localhost", "postal_code": "127001", "country": "GB"}
ENDED = ("completed", "failed", "cancelled", "needs_attention")


REFUSED = {"service": 0, "api": 0}  # admission control's answers, each waited out and retried


def place_by_service(client):
    from orderhub.orders.admission import Overloaded
    from orderhub.orders.services import order_place

    while True:
        try:
            order, _ = order_place(client=client, items=[{"sku": "SKU-BENCH", "quantity": 1}],
                                   payment_token="tok_ok", shipping_address=ADDRESS)
            return str(order.id)
        except Overloaded as exc:
            REFUSED["service"] += 1
            time.sleep(exc.retry_after)


def place_by_api(base, token):
    while True:
        response = requests.post(f"{base}/api/orders/", timeout=60, headers={"Authorization": f"Token {token}"},
                                 json={"items": [{"sku": "SKU-BENCH", "quantity": 1}], "payment_token": "tok_ok",
                                       "shipping_address": ADDRESS})
        if response.status_code == 503 and response.headers.get("Retry-After"):
            REFUSED["api"] += 1
            time.sleep(float(response.headers["Retry-After"]))
            continue
        response.raise_for_status()
        return response.json()["id"]


def orders_ended(ids, timeout):
    from django.db import close_old_connections

    from orderhub.orders.models import Order

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        close_old_connections()
        rows = list(Order.objects.filter(id__in=ids, status__in=ENDED).values_list("status", "created_at",
                                                                                    "updated_at"))
        if len(rows) == len(ids):
            return rows
        time.sleep(0.2)
    return list(Order.objects.filter(id__in=ids).values_list("status", "created_at", "updated_at"))


def orderhub_burst(place, n, threads, timeout):
    started = time.time()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ids = list(pool.map(lambda _: place(), range(n)))
    placed = time.time()
    rows = orders_ended(ids, timeout)
    outcomes = {}
    for status, *_ in rows:
        outcomes[status] = outcomes.get(status, 0) + 1
    done = [(created, updated) for status, created, updated in rows if status == "completed"]
    last = max((u.timestamp() for _, u in done), default=placed)
    return {
        "orders": n, "outcomes": outcomes, "accept_rate": round(n / (placed - started), 1),
        "sagas_per_s": round(len(done) / (last - started), 1),
        "latency_ms": percentiles([(u - c).total_seconds() for c, u in done]),
    }


def orderhub_lone(place, n):
    latencies = []
    for _ in range(n):
        order_id = place()
        status, created, updated = orders_ended([order_id], 30)[0]
        if status == "completed":
            latencies.append((updated - created).total_seconds())
    return {"orders": n, "latency_ms": percentiles(latencies)}


def wait_for_health(base, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/health/", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)


def traced_pass(env, args, base, token):
    """The REST API's loads again with tracing on: every process exports its spans with the real
    OTLP exporter to a receiver in this process (which stands in for a collector; its CPU is this
    process's, not counted in OrderHub's)."""
    from tests.support.otlp import OtlpReceiver

    receiver = OtlpReceiver()
    say("OrderHub: restarted with tracing on (OTLP/HTTP to a receiver in this process)")
    cluster = start_orderhub(env | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}, args.concurrency)
    wait_for_health(base)
    groups = process_groups({key: proc.pid for key, proc in cluster.procs.items()})
    databases = [DB_PREFIX + name for name in ("orderhub", "inventory", "payments", "shipping", "notifications")]
    orderhub_lone(lambda: place_by_api(base, token), 3)
    lone = orderhub_lone(lambda: place_by_api(base, token), args.lone)
    say("OrderHub: burst through the REST API, tracing on")
    before = snapshot(groups, VHOST, databases)
    burst = orderhub_burst(lambda: place_by_api(base, token), args.orders, args.threads, args.settle_timeout)
    after = snapshot(groups, VHOST, databases)
    time.sleep(1)  # the last batches of spans (OTEL_BSP_SCHEDULE_DELAY is 5 s by default)
    return cluster, {"on": {"lone_api": lone, "api_burst": burst, "api_costs": per_saga(before, after, args.orders),
                            "spans_received": len(receiver.spans)}}


def variant_pass(env, args, client, label, overrides, concurrency):
    """OrderHub restarted with `overrides` and `concurrency`: lone orders and a service burst, with
    CPU per saga by process."""
    say(f"OrderHub, {label}: restarted; lone orders, then a burst through the service")
    cluster = start_orderhub(env | overrides, concurrency)
    try:
        wait_for_health(f"http://{env['ORDERHUB_API_BIND']}")
        groups = process_groups({key: proc.pid for key, proc in cluster.procs.items()})
        databases = [DB_PREFIX + name for name in ("orderhub", "inventory", "payments", "shipping", "notifications")]
        orderhub_lone(lambda: place_by_service(client), 3)
        lone = orderhub_lone(lambda: place_by_service(client), args.lone)
        before = snapshot(groups, VHOST, databases)
        burst = orderhub_burst(lambda: place_by_service(client), args.orders, args.threads, args.settle_timeout)
        after = snapshot(groups, VHOST, databases)
        return {"lone": lone, "service_burst": burst, "costs": per_saga(before, after, args.orders)}
    finally:
        cluster.stop_all()


def with_count(concurrency, name, count):
    counts = dict(pair.split("=") for pair in concurrency.split(",") if pair)
    counts[name] = str(count)
    return ",".join(f"{k}={v}" for k, v in counts.items())


def report_variants(results):
    for key, title in (("batch_sizes", "reply batch size"), ("orchestrators", "orchestrators")):
        variants = results.get(key)
        if not variants:
            continue
        rows = []
        for label, side in variants.items():
            cpu = side["costs"]["cpu_ms_per_saga"]
            orchestrators = round(sum(v for k, v in cpu.items() if k.startswith("orchestrator")), 1)
            rows.append((label, side["service_burst"]["sagas_per_s"], side["lone"]["latency_ms"].get("p50"),
                         side["service_burst"]["latency_ms"].get("p99"), round(sum(cpu.values()), 1), orchestrators,
                         side["costs"]["writing_commits_per_saga"]))
        heads = (title, "burst sagas/s", "lone p50 ms", "burst p99 ms", "CPU ms/saga", "orchestrators' CPU",
                 "writing commits/saga")
        print("\n" + "  ".join(f"{h:>{max(len(h), 8)}}" for h in heads))
        for row in rows:
            print("  ".join(f"{('-' if v is None else v):>{max(len(h), 8)}}" for h, v in zip(heads, row)))
        for label, side in variants.items():
            print(f"  {title} {label}: CPU ms per saga by process",
                  json.dumps(dict(sorted(side["costs"]["cpu_ms_per_saga"].items(), key=lambda kv: -kv[1]))))


# --- chain loads ------------------------------------------------------------------------------
def chain_done(kind, ids, timeout):
    import psycopg2

    connection = psycopg2.connect(CHAINS[kind]["dsn"])
    connection.autocommit = True
    deadline = time.monotonic() + timeout
    try:
        while True:
            with connection.cursor() as cursor:
                cursor.execute("SELECT saga_id::text, extract(epoch from done_at) FROM notification "
                               "WHERE saga_id = ANY(%s::uuid[])", [ids])
                rows = dict(cursor.fetchall())
            if len(rows) == len(ids) or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)
    finally:
        connection.close()


def chain_burst(kind, n, threads, timeout):
    app = chain_app(kind)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    starts = {}

    def start(saga_id):
        starts[saga_id] = time.time()
        app.start_chain(saga_id)

    began = time.time()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(start, ids))
    done = chain_done(kind, ids, timeout)
    last = max((float(t) for t in done.values()), default=time.time())
    return {"orders": n, "outcomes": {"completed": len(done)}, "sagas_per_s": round(len(done) / (last - began), 1),
            "latency_ms": percentiles([float(done[i]) - starts[i] for i in done])}


def chain_lone(kind, n):
    app = chain_app(kind)
    latencies = []
    for _ in range(n):
        saga_id = str(uuid.uuid4())
        began = time.time()
        app.start_chain(saga_id)
        done = chain_done(kind, [saga_id], 30)
        if saga_id in done:
            latencies.append(float(done[saga_id]) - began)
    return {"orders": n, "latency_ms": percentiles(latencies)}


# --- report -----------------------------------------------------------------------------------
def ratio(ours, theirs):
    return f"{ours / theirs:.2f}x" if ours and theirs else "-"


def print_table(heads, rows):
    """(name, ours, theirs) rows beside each other, with ours as a ratio of theirs."""
    print(f"\n{heads[0]:34} {heads[1]:>10} {heads[2]:>10} {'ratio':>8}")
    for name, ours, theirs in rows:
        print(f"{name:34} {ours if ours is not None else '-':>10} {theirs if theirs is not None else '-':>10} "
              f"{ratio(ours, theirs):>8}")


def print_beside_chains(rows):
    """(name, OrderHub, plain, guarded) rows, with OrderHub's as a ratio of each chain's."""
    print(f"\n{'figure':40} {'OrderHub':>10} {'plain':>10} {'guarded':>10} {'vs plain':>9} {'vs guarded':>10}")
    for name, ours, plain, guarded in rows:
        cells = [value if value is not None else "-" for value in (ours, plain, guarded)]
        print(f"{name:40} {cells[0]:>10} {cells[1]:>10} {cells[2]:>10} {ratio(ours, plain):>9} "
              f"{ratio(ours, guarded):>10}")


def report(results):
    oh, pl, gu = results["orderhub"], results["chain"]["plain"], results["chain"]["guarded"]

    def each(get):
        values = []
        for side in (oh, pl, gu):
            try:
                values.append(get(side))
            except KeyError:
                values.append(None)
        return values

    burst = lambda side: side.get("service_burst") or side["burst"]  # noqa: E731
    cpu = lambda side: round(sum(side["costs"]["cpu_ms_per_saga"].values()), 1)  # noqa: E731
    rows = [
        ("lone saga p50 (ms)", *each(lambda side: side["lone"]["latency_ms"]["p50"])),
        ("lone saga p99 (ms)", *each(lambda side: side["lone"]["latency_ms"]["p99"])),
        ("burst (service): sagas/s", *each(lambda side: burst(side)["sagas_per_s"])),
        ("burst (service): p50 (ms)", *each(lambda side: burst(side)["latency_ms"]["p50"])),
        ("burst (service): p99 (ms)", *each(lambda side: burst(side)["latency_ms"]["p99"])),
        ("burst (REST API): sagas/s", oh["api_burst"]["sagas_per_s"], pl["burst"]["sagas_per_s"],
         gu["burst"]["sagas_per_s"]),
        ("messages per saga", *each(lambda side: side["costs"]["messages_per_saga"])),
        ("database commits per saga, all", *each(lambda side: side["costs"]["commits_per_saga"])),
        ("  of them writing (xids)", *each(lambda side: side["costs"]["writing_commits_per_saga"])),
        ("WAL fsyncs per saga", *each(lambda side: side["costs"]["wal_fsyncs_per_saga"])),
        ("CPU ms per saga, all (service burst)", *each(cpu)),
    ]
    print_beside_chains(rows)
    print(f"\noutcomes: service burst {oh['service_burst']['outcomes']}, API burst {oh['api_burst']['outcomes']} "
          f"(API accepted {oh['api_burst']['accept_rate']} orders/s; refused at the door and retried: "
          f"{oh.get('refused', {})})")
    for label, costs in (("service burst", oh["costs"]), ("REST API burst", oh["api_costs"])):
        print(f"CPU ms per saga by process (OrderHub, {label}; total {sum(costs['cpu_ms_per_saga'].values()):.1f}):",
              json.dumps(dict(sorted(costs["cpu_ms_per_saga"].items(), key=lambda kv: -kv[1]))))
    for kind, side in (("plain", pl), ("guarded", gu)):
        print(f"CPU ms per saga by process ({kind} chain burst):", json.dumps(side["costs"]["cpu_ms_per_saga"]))
    print("peak RSS MB by process:", json.dumps(oh["peak_rss_mb"] | {"plain-chain-worker": pl["peak_rss_mb"],
                                                                     "guarded-chain-worker": gu["peak_rss_mb"]}))
    if "tracing" in results:
        off, on = results["tracing"]["off"], results["tracing"]["on"]
        rows = [
            ("lone saga p50, REST API (ms)", on["lone_api"]["latency_ms"].get("p50"),
             off["lone_api"]["latency_ms"].get("p50")),
            ("burst (REST API): sagas/s", on["api_burst"]["sagas_per_s"], off["api_burst"]["sagas_per_s"]),
            ("burst (REST API): p50 (ms)", on["api_burst"]["latency_ms"].get("p50"),
             off["api_burst"]["latency_ms"].get("p50")),
            ("CPU ms per saga, all (REST burst)", round(sum(on["api_costs"]["cpu_ms_per_saga"].values()), 1),
             round(sum(off["api_costs"]["cpu_ms_per_saga"].values()), 1)),
        ]
        print_table(("what tracing costs", "on", "off"), rows)
        print(f"spans received while tracing: {on['spans_received']}; outcomes {on['api_burst']['outcomes']}")


def main(argv=None):
    args = parse_args(argv)
    rabbit = None
    if args.rabbit_cluster:
        from tests.support import rabbit_cluster as rabbit

        say("starting a three-node RabbitMQ cluster")
        say(f"running: {', '.join(rabbit.start())}")
    env = bench_env(rabbit)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ORDERHUB_", "BENCH_", "DJANGO_"))})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import logging

    logging.getLogger("orderhub").setLevel(logging.WARNING)  # the bench process itself: figures only
    say(f"bursts of {args.orders} orders from {args.threads} threads, {args.lone} lone orders; "
        f"processes {args.concurrency} (one of each other)")
    reset_world(env)
    client, token = seed()
    cluster = start_orderhub(env, args.concurrency)
    chain_workers = {kind: start_chain_worker(env, cluster.log_dir, kind) for kind in CHAINS}
    results = {"args": vars(args), "broker": "three-node cluster" if rabbit else "one node",
               "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        base = f"http://{env['ORDERHUB_API_BIND']}"
        wait_for_health(base)
        processes = {key: proc.pid for key, proc in cluster.procs.items()}
        groups = process_groups(processes)
        databases = [DB_PREFIX + name for name in ("orderhub", "inventory", "payments", "shipping", "notifications")]
        say("OrderHub: warming up, then lone orders")
        orderhub_lone(lambda: place_by_service(client), 3)
        lone = orderhub_lone(lambda: place_by_service(client), args.lone)
        say("OrderHub: burst through the service")
        before = snapshot(groups, VHOST, databases)
        with Profiles(cluster, args.profile.split(",")) as profiles:
            service_burst = orderhub_burst(lambda: place_by_service(client), args.orders, args.threads,
                                           args.settle_timeout)
        after = snapshot(groups, VHOST, databases)
        say("OrderHub: burst through the REST API")
        api_burst = orderhub_burst(lambda: place_by_api(base, token), args.orders, args.threads, args.settle_timeout)
        api_after = snapshot(groups, VHOST, databases)
        results["orderhub"] = {
            "lone": lone, "service_burst": service_burst, "api_burst": api_burst,
            "costs": per_saga(before, after, args.orders), "api_costs": per_saga(after, api_after, args.orders),
            "peak_rss_mb": {name: peak_rss_mb(tree(pid)) for name, pid in processes.items()},
            "refused": dict(REFUSED),
        }
        if args.tracing:
            say("OrderHub: lone orders through the REST API")
            api_lone = orderhub_lone(lambda: place_by_api(base, token), args.lone)
            cluster.stop_all()
            cluster, results["tracing"] = traced_pass(env, args, base, token)
            results["tracing"]["off"] = {"lone_api": api_lone, "api_burst": api_burst,
                                         "api_costs": results["orderhub"]["api_costs"]}
        cluster.stop_all()
        for size in filter(None, args.batch_sizes.split(",")):
            results.setdefault("batch_sizes", {})[size] = variant_pass(
                env, args, client, f"reply batch {size}", {"ORDERHUB_REPLY_BATCH": size}, args.concurrency)
        for count in filter(None, args.orchestrators.split(",")):
            results.setdefault("orchestrators", {})[count] = variant_pass(
                env, args, client, f"{count} orchestrator(s)", {}, with_count(args.concurrency, "orchestrator", count))
        results["chain"] = {}
        for kind, worker in chain_workers.items():
            say(f"{kind} chain: warming up, lone chains, then a burst")
            chain_groups = {"chain-worker": tree(worker.pid)} | {
                k: v for k, v in groups.items() if k in ("postgres", "rabbitmq", "redis", "load-generator")}
            chain_lone(kind, 3)
            lone = chain_lone(kind, args.lone)
            before = snapshot(chain_groups, CHAINS[kind]["vhost"], [CHAINS[kind]["db"]])
            burst = chain_burst(kind, args.orders, args.threads, args.settle_timeout)
            after = snapshot(chain_groups, CHAINS[kind]["vhost"], [CHAINS[kind]["db"]])
            results["chain"][kind] = {"lone": lone, "burst": burst, "costs": per_saga(before, after, args.orders),
                                      "peak_rss_mb": peak_rss_mb(tree(worker.pid))}
    finally:
        cluster.stop_all()
        for worker in chain_workers.values():
            worker.terminate()
            worker.wait(timeout=30)
        if rabbit:
            rabbit.stop()
    report(results)
    report_variants(results)
    if args.profile:
        profiles.report()
    out = ROOT / "var" / "bench-results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
