"""`make soak`: memory over a long run. Starts OrderHub as `make bench` does (its own world), places
--orders sagas (default 20,000) through the service in chunks of 1,000 from --threads threads,
honouring admission control, and reads every process's resident memory (VmRSS, a process and its
children) after each chunk has ended. The bar: every process ends within 10% of where it was after
the first 1,000. Prints the table, writes JSON under var/bench-results/, exits 1 past the bar."""
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    env = bench.bench_env()
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
                ids = list(pool.map(lambda _: bench.place_by_service(client), range(n)))
            for status, *_ in bench.orders_ended(ids, 600):
                outcomes[status] = outcomes.get(status, 0) + 1
            done += n
            sample = {name: rss_mb(bench.tree(pid)) for name, pid in processes.items()}
            samples.append({"sagas": done, "rss_mb": sample, "elapsed_s": round(time.monotonic() - started)})
            bench.say(f"{done} sagas, {outcomes}, RSS MB {sample}")
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
    print("soak:", f"RSS grew more than {BAR:.0%}: {over}" if over else f"every process within {BAR:.0%}")
    out = bench.ROOT / "var" / "bench-results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"samples": samples, "outcomes": outcomes, "growth": growth}, indent=2))
    print(f"results: {path.relative_to(bench.ROOT)}")
    return 1 if over or set(outcomes) != {"completed"} else 0


if __name__ == "__main__":
    sys.exit(main())
