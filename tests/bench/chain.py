"""The baseline for `make bench`: a plain Celery chain of the same five domain transactions, with
none of OrderHub's guarantees (no durable saga state, no outbox, no inbox, no compensation).

Prefork with 2 processes, acks late, prefetch 1, no result backend; each step is one committed
PostgreSQL transaction on a connection the process keeps."""
import os

import psycopg2
from celery import Celery, chain

app = Celery("bench_chain", broker=os.environ.get("BENCH_CHAIN_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"))
app.conf.update(
    task_serializer="json", accept_content=["json"], task_acks_late=True, worker_prefetch_multiplier=1,
    task_ignore_result=True, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
)
DSN = os.environ.get("BENCH_CHAIN_DSN", "dbname=bench_chain host=127.0.0.1 user=postgres")
SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, available integer NOT NULL);
CREATE TABLE IF NOT EXISTS reservation (saga_id uuid PRIMARY KEY);
CREATE TABLE IF NOT EXISTS payment (saga_id uuid PRIMARY KEY, status text NOT NULL);
CREATE TABLE IF NOT EXISTS shipment (saga_id uuid PRIMARY KEY);
CREATE TABLE IF NOT EXISTS notification (saga_id uuid PRIMARY KEY, done_at timestamptz NOT NULL);
TRUNCATE reservation, payment, shipment, notification;
INSERT INTO stock VALUES ('SKU-BENCH', 100000000) ON CONFLICT (sku) DO UPDATE SET available = 100000000;
"""
_connection = None


def _transaction(*statements):
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg2.connect(DSN)
    with _connection, _connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


@app.task(name="chain.reserve")
def reserve(saga_id):
    _transaction(("UPDATE stock SET available = available - 1 WHERE sku = 'SKU-BENCH'", ()),
                 ("INSERT INTO reservation VALUES (%s)", (saga_id,)))


@app.task(name="chain.authorize")
def authorize(saga_id):
    _transaction(("INSERT INTO payment VALUES (%s, 'authorized')", (saga_id,)))


@app.task(name="chain.ship")
def ship(saga_id):
    _transaction(("INSERT INTO shipment VALUES (%s)", (saga_id,)))


@app.task(name="chain.capture")
def capture(saga_id):
    _transaction(("UPDATE payment SET status = 'captured' WHERE saga_id = %s", (saga_id,)))


@app.task(name="chain.notify")
def notify(saga_id):
    _transaction(("INSERT INTO notification VALUES (%s, clock_timestamp())", (saga_id,)))


def start(saga_id):
    chain(*(step.si(saga_id) for step in (reserve, authorize, ship, capture, notify))).apply_async()
