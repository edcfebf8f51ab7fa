"""The baselines for `make bench`: a Celery chain of the same five domain transactions, two ways.

- **plain**: none of OrderHub's guarantees (classic queues, no publisher confirms, no inbox, no
  durable saga state, no compensation).
- **guarded** (`BENCH_CHAIN_GUARDED=1`): what a careful engineer would hand-roll with Celery for
  at-least-once delivery with idempotent steps: quorum queues, persistent messages, publisher
  confirms, `acks_late` with reject-on-worker-lost, and an inbox row per step, claimed in the step's
  own transaction (a redelivered step is a no-op).

Both: prefork with 2 processes, prefetch 1, no result backend; each step is one committed
PostgreSQL transaction on a connection the process keeps. `make_app` builds either; the worker
(`celery -A tests.bench.chain`) builds the one its environment names."""
import os

import psycopg2
from celery import Celery, chain
from kombu import Queue

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, available integer NOT NULL);
CREATE TABLE IF NOT EXISTS reservation (saga_id uuid PRIMARY KEY);
CREATE TABLE IF NOT EXISTS payment (saga_id uuid PRIMARY KEY, status text NOT NULL);
CREATE TABLE IF NOT EXISTS shipment (saga_id uuid PRIMARY KEY);
CREATE TABLE IF NOT EXISTS notification (saga_id uuid PRIMARY KEY, done_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS inbox (message_id text PRIMARY KEY, received_at timestamptz NOT NULL DEFAULT now());
TRUNCATE reservation, payment, shipment, notification, inbox;
INSERT INTO stock VALUES ('SKU-BENCH', 100000000) ON CONFLICT (sku) DO UPDATE SET available = 100000000;
"""
STEPS = {
    "reserve": [("UPDATE stock SET available = available - 1 WHERE sku = 'SKU-BENCH'", True),
                ("INSERT INTO reservation VALUES (%s)", False)],
    "authorize": [("INSERT INTO payment VALUES (%s, 'authorized')", False)],
    "ship": [("INSERT INTO shipment VALUES (%s)", False)],
    "capture": [("UPDATE payment SET status = 'captured' WHERE saga_id = %s", False)],
    "notify": [("INSERT INTO notification VALUES (%s, clock_timestamp())", False)],
}


def make_app(guarded, broker, dsn):
    """A Celery app with the five steps as tasks; `app.start_chain(saga_id)` sends one chain."""
    name = "bench_guarded" if guarded else "bench_chain"
    app = Celery(name, broker=broker)
    app.conf.update(
        task_serializer="json", accept_content=["json"], task_acks_late=True, worker_prefetch_multiplier=1,
        task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
    )
    if guarded:
        app.conf.update(
            task_queues=[Queue("bench_guarded", queue_arguments={"x-queue-type": "quorum"}, durable=True)],
            task_default_queue="bench_guarded", task_default_delivery_mode="persistent",
            broker_transport_options={"confirm_publish": True}, task_reject_on_worker_lost=True,
            worker_detect_quorum_queues=True,
        )
    state = {"connection": None}

    def transaction(step, saga_id, message_id):
        connection = state["connection"]
        if connection is None or connection.closed:
            connection = state["connection"] = psycopg2.connect(dsn)
        with connection, connection.cursor() as cursor:
            if guarded:
                cursor.execute("INSERT INTO inbox (message_id) VALUES (%s) ON CONFLICT DO NOTHING", (message_id,))
                if cursor.rowcount == 0:
                    return  # a redelivery of a step already done
            for sql, constant in STEPS[step]:
                cursor.execute(sql, () if constant else (saga_id,))

    tasks = []
    for step in STEPS:
        def run(self, saga_id, _step=step):
            transaction(_step, saga_id, self.request.id)

        tasks.append(app.task(run, name=f"chain.{step}", bind=True))

    def start_chain(saga_id):
        chain(*(task.si(saga_id) for task in tasks)).apply_async()

    app.start_chain = start_chain
    return app


GUARDED = os.environ.get("BENCH_CHAIN_GUARDED") == "1"
app = make_app(GUARDED, os.environ.get("BENCH_CHAIN_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"),
               os.environ.get("BENCH_CHAIN_DSN", "dbname=bench_chain host=127.0.0.1 user=postgres"))
