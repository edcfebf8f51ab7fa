"""Property-based: no message, however broken, stops a process or vanishes without a trace.

Hypothesis generates broken messages (bodies of any JSON shape and non-JSON bytes; the headers
Celery reads, missing, of the wrong type or out of range; any content type and encoding; sizes from
empty to megabytes) and publishes them, a batch at a time, to every queue the product consumes,
dead-letter queues included. After each batch every process still runs with the same PID, every
message is in the archive with a reason (a tick is dropped and counted instead), and an order
placed afterwards completes."""
import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kombu.message import Message

from orderhub import topology
from orderhub.celery import app
from orderhub.celery_consumer import malformed_ticks, task_message_problem
from orderhub.deadletters.models import DeadLetter
from orderhub.deadletters.reasons import message_key
from tests.integration.helpers import api_client, place, product, wait_ended
from tests.support import poison

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

QUEUES = poison.QUEUES
TASKS = ["inventory.reserve", "inventory.release", "payments.authorize", "payments.capture", "payments.void",
         "shipping.create", "shipping.cancel", "notifications.send", "saga.reply", "saga.tick.relay_outbox",
         "saga.tick.sweep_deadlines"]
TICKS = {"saga.tick.relay_outbox", "saga.tick.sweep_deadlines"}
BATCH = 25
BATCHES = 8  # 200 messages in all

FRESH_ID = "<a fresh task id>"  # replaced when published: every message has a key of its own

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Header values AMQP can carry: no integer past 64 bits, no infinite float (RabbitMQ closes the
# channel of a publisher that sends one, before any consumer could see it).
amqp_ints = st.integers(-(2**63), 2**63 - 1)
junk = st.none() | st.booleans() | st.integers(-5, 2**40) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=30) \
    | st.lists(amqp_ints, max_size=3) | st.dictionaries(st.text(max_size=4), amqp_ints, max_size=2)
optional = {
    "task": st.sampled_from(TASKS) | junk,
    "id": st.just(FRESH_ID) | junk,
    "eta": st.sampled_from(["2020-01-01T00:00:00", "3000-01-01T00:00:00+00:00", "yesterday"]) | junk,
    "expires": st.sampled_from(["2020-01-01T00:00:00", "3000-01-01T00:00:00"]) | junk,
    "timelimit": st.tuples(junk, junk).map(list) | junk,
    "retries": junk,
    "compression": st.sampled_from(["application/x-gzip", "application/x-bz2", "zstd", "bogus"]) | junk,
    "content-encoding": junk,
}
task_headers = {"task": st.sampled_from(TASKS), "id": st.just(FRESH_ID)}
headers = st.one_of(
    st.fixed_dictionaries({}, optional=optional),  # anything, or nothing
    st.fixed_dictionaries(task_headers, optional={k: v for k, v in optional.items() if k not in task_headers}),
    st.fixed_dictionaries(task_headers),  # a task message as Celery sends it: only its body is broken
)
bodies = st.one_of(
    st.tuples(json_values, json_values, json_values).map(list).map(json.dumps).map(str.encode),
    json_values.map(json.dumps).map(str.encode),
    st.binary(max_size=300),
    st.integers(0, 3).map(lambda i: [b"", b"{", b"\x00" * 64, None][i] or megabytes_of_task()),
)
def megabytes_of_task():
    return json.dumps([["x" * (3 << 20)], {}, {}]).encode()


content_types = st.sampled_from(["application/json", "application/x-python-serialize", "application/x-yaml",
                                 "application/x-msgpack", "text/plain", "application/octet-stream", "", "a/b"])
encodings = st.sampled_from(["utf-8", "binary", "utf-16", "latin-1", "bogus", ""])
messages = st.fixed_dictionaries({"queue": st.sampled_from(QUEUES), "headers": headers, "body": bodies,
                                  "content_type": content_types, "content_encoding": encodings})


def runs_a_tick(message):
    """A tick that would run (nothing to dead-letter or count): not what this test generates. The
    consumer's own check decides, on the message as a worker would receive it."""
    task = message["headers"].get("task")
    if not isinstance(task, str) or task not in TICKS:
        return False
    received = Message(body=message["body"], content_type=message["content_type"] or None,
                       content_encoding=message["content_encoding"] or None, headers=dict(message["headers"]))
    try:
        return not received.errors and task_message_problem(app, received) is None
    except Exception:
        return False


def publish_batch(batch):
    published = []
    with app.connection_for_write() as connection:  # publisher confirms: a refused publish raises
        producer = connection.Producer()
        for message in batch:
            properties = {"message_id": str(uuid.uuid4())}
            if message["headers"].get("id") == FRESH_ID:
                message = message | {"headers": message["headers"] | {"id": str(uuid.uuid4())}}
            producer.publish(message["body"], exchange="", routing_key=message["queue"], headers=message["headers"],
                             content_type=message["content_type"] or None,
                             content_encoding=message["content_encoding"] or None, retry=True, **properties)
            published.append((message, properties))
    return published


def expected_letter(message, properties):
    key = message_key(headers=message["headers"], properties=properties, body=message["body"])
    return (key if len(key) <= 100 else None), message["queue"].removesuffix(".dlq")


def unaccounted(letters, ticks, ticks_before):
    """What is not yet accounted for: dead letters (key, queue) not in the archive, ticks not
    counted, queues not drained."""
    archived = set(DeadLetter.objects.filter(message_key__in=[k for k, _ in letters]).values_list(
        "message_key", "queue"))
    missing = [letter for letter in letters if letter not in archived]
    if malformed_ticks() < ticks_before + ticks:
        missing.append(("ticks counted", malformed_ticks() - ticks_before, "of", ticks))
    return missing + [("not drained", name) for name in QUEUES if depth(name)]


def wait_accounted(letters, ticks, ticks_before, timeout=90, described=None):
    deadline = time.monotonic() + timeout
    while (missing := unaccounted(letters, ticks, ticks_before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    details = [(described or {}).get(item[0], item) for item in missing[:10]]
    assert not missing, f"not archived, counted or drained after {timeout} s: {details}"


def describe(message, properties):
    return {key: repr(value)[:300] for key, value in (message | properties).items()}


def depth(name):
    with app.connection_for_read() as connection:
        channel = connection.channel()
        try:
            return channel.queue_declare(name, passive=True).message_count
        finally:
            channel.close()


# No shrinking: a failing batch is reported as it was (shrinking would publish it again and again).
@settings(max_examples=BATCHES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
@given(batch=st.lists(messages.filter(lambda m: not runs_a_tick(m)), min_size=BATCH, max_size=BATCH))
def test_no_broken_message_stops_a_process_or_vanishes(live, batch):
    pids = live.pids()
    ticks_before = malformed_ticks()

    published = publish_batch(batch)

    letters = {expected_letter(m, p) for m, p in published if m["queue"] != topology.TICKS_QUEUE}
    wait_accounted([letter for letter in letters if letter[0]],
                   sum(1 for m, _ in published if m["queue"] == topology.TICKS_QUEUE), ticks_before,
                   described={expected_letter(m, p)[0]: describe(m, p) for m, p in published})
    assert live.pids() == pids, "a process died or was restarted"
    for message, properties in published:
        key, queue = expected_letter(message, properties)
        if key and message["queue"] != topology.TICKS_QUEUE:
            assert DeadLetter.objects.get(message_key=key, queue=queue).reason
    order = wait_ended(place(api_client(), sku=product(sku=f"SKU-{uuid.uuid4().hex[:8]}"))["id"], timeout=20)
    assert order.status == "completed"


def test_every_kind_of_malformed_message_on_every_queue_is_archived_or_counted(live):
    """The kinds that killed a worker or vanished before (tests/support/poison.py), on every queue."""
    pids = live.pids()
    ticks_before = malformed_ticks()
    sent = []
    with app.connection_for_write() as connection:
        for queue in poison.QUEUES:
            for kind in poison.KINDS:
                message_id = str(uuid.uuid4())
                poison.publish_malformed(connection, queue, kind, message_id)
                sent.append((queue, kind, message_id))
    archived_ids = [m for q, _, m in sent if q != topology.TICKS_QUEUE]
    ticks = len(sent) - len(archived_ids)

    wait_accounted([(m, q.removesuffix(".dlq")) for q, _, m in sent if q != topology.TICKS_QUEUE], ticks,
                   ticks_before)

    assert live.pids() == pids, "a process died or was restarted"
    letters = {letter.message_key: letter for letter in DeadLetter.objects.filter(message_key__in=archived_ids)}
    for queue, kind, message_id in sent:
        if queue != topology.TICKS_QUEUE:
            letter = letters[message_id]
            assert letter.queue == queue.removesuffix(".dlq"), (kind, queue)
            if not queue.endswith(".dlq"):
                assert letter.reason.startswith("malformed: "), (kind, queue, letter.reason)
    order = wait_ended(place(api_client(), sku=product())["id"], timeout=20)
    assert order.status == "completed"
