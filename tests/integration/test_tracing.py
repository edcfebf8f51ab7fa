"""One order, one trace: real processes (gunicorn, the orchestrator, the four domain workers)
export their spans with the real OTLP exporter to a receiver in this process. The API process is
killed after its commit, before it could publish the saga's first command (its broker is
unreachable): the relay sweep publishes that command seconds later, from the orchestrator, and it
still joins the order's trace through the context stored in its outbox row."""
import signal
from pathlib import Path

import pytest

from orderhub.orders.models import Order
from sagas.models import SagaInstance
from tests.conftest import eventually
from tests.integration.conftest import LOG_DIR
from tests.integration.conftest import TestCluster as Processes
from tests.integration.helpers import ADDRESS, product
from tests.support.cluster import WORKERS
from tests.support.otlp import OtlpReceiver

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

SERVER, PRODUCER = 2, 4
STEPS = [("reserve_stock", "inventory.reserve"), ("authorize", "payments.authorize"),
         ("create_shipment", "shipping.create"), ("capture", "payments.capture"), ("notify", "notifications.send")]


@pytest.fixture
def receiver():
    running = OtlpReceiver()
    yield running
    running.stop()


@pytest.fixture
def traced(live, receiver):
    """The session's orchestrator and domain workers, swapped for copies that trace; swapped back
    afterwards (two sets on the same queues would split the messages between them)."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    for name in WORKERS:
        live.kill(f"{name}-1", signal.SIGTERM)
    tracing = Processes(live.env | env, Path(LOG_DIR))
    try:
        tracing.wait_ready([tracing.start(name, index=7) for name in WORKERS])
        yield env
    finally:
        tracing.stop_all()
        live.wait_ready([live.start(name) for name in WORKERS])


def ancestors(span, by_id):
    seen = []
    while span.parent_id:
        span = by_id[span.parent_id]
        seen.append(span)
    return seen


def test_one_order_is_one_trace_from_the_request_through_every_step_even_after_a_crash(traced, receiver,
                                                                                      api_process):
    sku = product(stock=5)
    api = api_process(ORDERHUB_BROKER_URL="amqp://guest:guest@127.0.0.1:1//", **traced)
    body = {"items": [{"sku": sku, "quantity": 1}], "payment_token": "tok_ok", "shipping_address": ADDRESS}
    response, _ = api.timed("POST", "/api/orders/", json=body)
    assert response.status_code == 202, response.text
    order = Order.objects.get(id=response.json()["id"])
    trace_id = SagaInstance.objects.get(id=order.saga_id).trace["traceparent"].split("-")[1]

    # The request's span has reached the receiver; the API dies without having published anything.
    eventually(lambda: [s for s in receiver.trace(trace_id) if s.kind == SERVER], timeout=10,
               message="the API's request span")
    api.processes.kill("api-1", signal.SIGKILL)

    eventually(lambda: Order.objects.get(id=order.id).status == "completed", timeout=30,
               message="the order to complete")

    def whole():
        spans = receiver.trace(trace_id)
        by_id = {s.span_id: s for s in spans}
        ended = any(s.name == "reply apply notify" for s in spans)
        return (spans, by_id) if ended and all(not s.parent_id or s.parent_id in by_id for s in spans) else None

    spans, by_id = eventually(whole, timeout=15, message="every span of the trace, none without its parent")

    # One root: the API request.
    [root] = [s for s in spans if not s.parent_id]
    assert (root.service, root.kind) == ("orderhub-api", SERVER) and "POST" in root.name

    # The first command was published by the orchestrator's relay sweep, under the request's span.
    [first_publish] = [s for s in spans if s.name == "outbox publish inventory.reserve"]
    assert first_publish.service == "orderhub-orchestrator"
    assert first_publish.attributes["orderhub.publisher"] == "relay"
    assert root in ancestors(first_publish, by_id)

    # Each step: outbox publish -> (Celery publish, run) -> handle, in its domain's worker -> reply
    # apply in the orchestrator -> the next step's publish.
    previous = root
    for step, message_type in STEPS:
        [publish] = [s for s in spans if s.name == f"outbox publish {message_type}"]
        [handle] = [s for s in spans if s.name == f"handle {message_type}"]
        [apply] = [s for s in spans if s.name == f"reply apply {step}"]
        assert handle.service == f"orderhub-{message_type.split('.')[0]}"
        assert apply.service == "orderhub-orchestrator"
        assert handle.attributes["orderhub.step"] == step
        assert previous in ancestors(publish, by_id), step
        assert publish in ancestors(handle, by_id), step
        assert handle in ancestors(apply, by_id), step
        # The hop went through RabbitMQ in the Celery instrumentation's spans (its headers carried
        # the context), and the handler's SQL is traced by the psycopg2 instrumentation.
        hop = ancestors(handle, by_id)[: ancestors(handle, by_id).index(publish)]
        assert any(s.kind == PRODUCER and s.service == publish.service for s in hop), (step, hop)
        assert any(s.parent_id == handle.span_id and s.attributes.get("db.system") == "postgresql"
                   for s in spans), step
        previous = apply
