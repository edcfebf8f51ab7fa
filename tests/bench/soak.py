"""`make soak`: memory over a long run. Starts OrderHub as `make bench` does (its own world), places
--orders sagas (default 20,000) through the service in chunks of 1,000 from --threads threads,
honouring admission control, and reads every process's resident memory (VmRSS, a process and its
children) after each chunk has ended. The bar: every process ends within 10% of where it was after
the first 1,000. Prints the table, writes JSON under var/bench-results/, exits 1 past the bar.

With --retention-seconds S, every retention (orderhub/retention.py) is S seconds and beat purges
every 10 s: the rows of the tables the purge keeps (outbox, saga events, each inbox, idempotency
keys) are counted after each chunk too. A table fills for one retention before the purge removes
anything, so its baseline is the first chunk that ends a full retention and purge interval after
the start (the first 1,000 end before anything has expired); the bar: every later chunk's count
within 10% of that baseline, which shows the purge keeping the tables flat.

`--report var/bench-results/soak-....json` prints the verdict of a saved run again."""
import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tests.bench import run as bench

CHUNK = 1000
BAR = 0.10


def rss_mb(pids):
    """Resident memory now, a process and its children together."""
    return round(sum(bench.status_mb(pids, "VmRSS")), 1)


def place_with_a_key(client) -> str:
    """bench.place_by_service, each order with an Idempotency-Key (as a careful client sends)."""
    import uuid

    from orderhub.orders.admission import Overloaded
    from orderhub.orders.services import order_place

    while True:
        try:
            order, _ = order_place(client=client, items=[{"sku": "SKU-BENCH", "quantity": 1}],
                                   payment_token="tok_ok", shipping_address=bench.ADDRESS,
                                   idempotency_key=str(uuid.uuid4()), fingerprint="soak")
            return str(order.id)
        except Overloaded as exc:
            bench.REFUSED["service"] += 1
            time.sleep(exc.retry_after)


def table_rows() -> dict[str, int]:
    """Rows now in each table the retention purge keeps."""
    from django.apps import apps
    from django.db import close_old_connections
    from django.conf import settings

    from orderhub.orders.models import Order
    from sagas.models import OutboxMessage, SagaEvent

    close_old_connections()
    rows = {"outbox": OutboxMessage.objects.count(), "saga events": SagaEvent.objects.count(),
            "orders with an idempotency key": Order.objects.filter(idempotency_key__isnull=False).count()}
    for domain in settings.SERVICE_DATABASES:
        rows[f"{domain} inbox"] = apps.get_model(domain, "Inbox").objects.using(domain).count()
    return rows


PURGE_INTERVAL = 10.0  # ORDERHUB_RETENTION_INTERVAL in a run with --retention-seconds


def rows_verdict(samples, retention_seconds):
    """Print the tables' rows (baseline: the first chunk ended a retention and a purge interval
    after the start) and return {table: growth} for every table past the bar."""
    steady = [s for s in samples if s["elapsed_s"] >= retention_seconds + PURGE_INTERVAL]
    if len(steady) < 2:
        print(f"\nrows: the run ended before a retention ({retention_seconds:g} s) had passed; no verdict")
        return {"rows": "run too short for its retention"}
    base, later = steady[0], steady[1:]
    print(f"\n{'table (retention ' + format(retention_seconds, 'g') + ' s)':34} {'after 1,000':>12} "
          f"{'baseline':>10} {'most later':>11} {'last':>8}   (baseline: after {base['sagas']:,}, "
          f"{base['elapsed_s']} s in)")
    over = {}
    for table, baseline in base["rows"].items():
        most = max(s["rows"][table] for s in later)
        print(f"{table:34} {samples[0]['rows'][table]:>12} {baseline:>10} {most:>11} {later[-1]['rows'][table]:>8}")
        if most > baseline * (1 + BAR):
            over[f"rows:{table}"] = round(most / max(baseline, 1) - 1, 3)
    return over


def report(path, retention_seconds=None):
    """A saved run's verdict (runs saved before the file recorded its retention: pass it)."""
    saved = json.loads(open(path).read())
    retention = saved.get("retention_seconds") or retention_seconds
    over = rows_verdict(saved["samples"], retention) if retention else {}
    over |= {name: g for name, g in saved["growth"].items() if g > BAR}
    print("soak:", f"past the bar of {BAR:.0%}: {over}" if over else f"every process and table within {BAR:.0%}")
    return 1 if over or set(saved["outcomes"]) != {"completed"} else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--retention-seconds", type=float, default=None)
    parser.add_argument("--report", metavar="JSON", help="print the verdict of a saved run, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        return report(args.report, args.retention_seconds)
    env = bench.bench_env()
    if args.retention_seconds:
        days = str(args.retention_seconds / 86400)
        env |= {f"ORDERHUB_RETENTION_{kind}_DAYS": days
                for kind in ("OUTBOX", "SAGA_EVENTS", "DEAD_LETTER", "INBOX", "IDEMPOTENCY_KEY")}
        env |= {"ORDERHUB_RETENTION_INTERVAL": format(PURGE_INTERVAL, "g")}
    import os

    os.environ.update({k: v for k, v in env.items() if k.startswith(("ORDERHUB_", "BENCH_", "DJANGO_"))})
    import django

    django.setup()
    import logging

    logging.getLogger("orderhub").setLevel(logging.WARNING)
    bench.say(f"soak: {args.orders} orders in chunks of {CHUNK} from {args.threads} threads")
    bench.reset_world(env)
    client, _ = bench.seed()
    cluster = bench.start_orderhub(env)
    samples, outcomes = [], {}
    started = time.monotonic()
    try:
        processes = {key: proc.pid for key, proc in cluster.procs.items()}
        done = 0
        while done < args.orders:
            n = min(CHUNK, args.orders - done)
            with ThreadPoolExecutor(max_workers=args.threads) as pool:
                ids = list(pool.map(lambda _: place_with_a_key(client), range(n)))
            for status, *_ in bench.orders_ended(ids, 600):
                outcomes[status] = outcomes.get(status, 0) + 1
            done += n
            sample = {name: rss_mb(bench.tree(pid)) for name, pid in processes.items()}
            samples.append({"sagas": done, "rss_mb": sample, "elapsed_s": round(time.monotonic() - started),
                            "rows": table_rows() if args.retention_seconds else {}})
            bench.say(f"{done} sagas, {outcomes}, RSS MB {sample}, rows {samples[-1]['rows']}")
    finally:
        cluster.stop_all()
    first, last = samples[0]["rss_mb"], samples[-1]["rss_mb"]
    growth = {name: round((last[name] - first[name]) / first[name], 3) for name in first if first[name]}
    print(f"\n{'process':16} {'after 1,000':>12} {'after ' + format(samples[-1]['sagas'], ','):>14} {'growth':>8}")
    for name in first:
        print(f"{name:16} {first[name]:>12} {last[name]:>14} {growth.get(name, 0):>8.1%}")
    print(f"\noutcomes: {outcomes}; {samples[-1]['sagas'] / samples[-1]['elapsed_s']:.1f} sagas/s over "
          f"{samples[-1]['elapsed_s']} s; refused at the door and retried: {bench.REFUSED['service']}")
    over = {name: g for name, g in growth.items() if g > BAR}
    if args.retention_seconds:
        over |= rows_verdict(samples, args.retention_seconds)
    print("soak:", f"past the bar of {BAR:.0%}: {over}" if over else f"every process and table within {BAR:.0%}")
    out = bench.ROOT / "var" / "bench-results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"samples": samples, "outcomes": outcomes, "growth": growth,
                                "retention_seconds": args.retention_seconds}, indent=2))
    print(f"results: {path.relative_to(bench.ROOT)}")
    return 1 if over or set(outcomes) != {"completed"} else 0


if __name__ == "__main__":
    sys.exit(main())
