"""Profile one reply applied by the engine, with its command published, outside Celery.

Uses the world `make bench` leaves behind (databases `bench_*`, vhost `orderhub_bench`; run
`make bench` once first). Starts N sagas, then applies each one's first reply and prints the CPU
and wall time per reply, then cProfile's top functions by own time (`--no-profile`: the times
alone, without the profiler's overhead). The commands it publishes stay in the bench vhost's
queues; the next `make bench` starts from a fresh vhost.

    .venv/bin/python -m tests.bench.profile_reply 300 [--no-profile]
"""
import cProfile
import os
import pstats
import sys
import time


def main(argv):
    count = int(argv[0]) if argv and argv[0].isdigit() else 300
    os.environ.update(DJANGO_SETTINGS_MODULE="orderhub.settings", ORDERHUB_DB_PREFIX="bench_",
                      ORDERHUB_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/orderhub_bench",
                      ORDERHUB_REDIS_URL="redis://127.0.0.1:6379/3", ORDERHUB_LOG_LEVEL="WARNING")
    import django

    django.setup()
    from django.db import transaction

    from contracts import Command, Reply
    from sagas import engine
    from sagas.definitions import PLACE_ORDER
    from sagas.models import OutboxMessage
    from tests.unit.sagas.saga_harness import place_order_context

    saga_ids = []
    for _ in range(count):
        with transaction.atomic():
            saga_ids.append(engine.saga_start(definition=PLACE_ORDER, context=place_order_context(),
                                              correlation_id="profile").id)
    replies = [Reply.to(Command.from_dict(OutboxMessage.objects.get(saga_id=saga_id).body), "succeeded",
                        data={"reservation_id": 1}) for saga_id in saga_ids]
    profiler = cProfile.Profile()
    profiling = "--no-profile" not in argv
    wall, cpu = time.perf_counter(), time.process_time()
    if profiling:
        profiler.enable()
    for reply in replies:
        engine.reply_apply(reply)
    profiler.disable()
    print(f"reply_apply with its publish: {(time.process_time() - cpu) * 1000 / count:.2f} ms CPU, "
          f"{(time.perf_counter() - wall) * 1000 / count:.2f} ms wall per reply"
          f"{' (under cProfile)' if profiling else ''}")
    if profiling:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
