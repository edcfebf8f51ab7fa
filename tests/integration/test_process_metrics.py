"""Each worker's own metrics (orderhub/process_metrics.py), scraped from real processes while
orders flow: counters and histograms move, with bounded labels."""
import re

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import eventually
from tests.integration.api_process import free_port
from tests.integration.conftest import LOG_DIR
from tests.integration.helpers import api_client, place, product, wait_ended
from tests.support.cluster import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

STEPS = {"reserve_stock", "authorize", "create_shipment", "capture", "notify"}
OUTCOMES = {"applied", "late", "stale", "unknown", "succeeded", "failed", "in_flight", "retry", "error"}


def samples(port, name):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == name]


def total(port, name, **labels):
    return sum(s.value for s in samples(port, name) if all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture
def measured(live):
    """A second orchestrator and inventory worker, each serving its metrics on a port of its own."""
    ports = {"orchestrator": free_port(), "inventory": free_port()}
    extra = {name: Cluster(live.env | {"ORDERHUB_METRICS_PORT": str(port)}, LOG_DIR) for name, port in ports.items()}
    for name, cluster in extra.items():
        cluster.start(name, index=7)

    def up(port):
        try:
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).ok
        except requests.ConnectionError:
            return False

    for port in ports.values():
        eventually(lambda port=port: up(port), timeout=30, message=f"metrics on port {port}")
    yield ports
    for cluster in extra.values():
        cluster.stop_all()


def test_counters_and_histograms_move_while_orders_flow(measured):
    sku = product(stock=50)
    client = api_client()
    orders = []
    # Replies and commands are shared between these processes and the suite's own; order until
    # both of ours have done some of the work.
    for _ in range(40):
        orders.append(place(client, sku=sku, token="tok_ok")["id"])
        wait_ended(orders[-1], timeout=20)
        if total(measured["orchestrator"], "orderhub_sagas_ended_total", saga_type="place_order",
                 status="completed") and total(
                measured["inventory"], "orderhub_commands_total", type="inventory.reserve", outcome="succeeded"):
            break
    assert total(measured["orchestrator"], "orderhub_replies_total", outcome="applied") > 0
    assert total(measured["inventory"], "orderhub_commands_total", type="inventory.reserve", outcome="succeeded") > 0
    assert total(measured["orchestrator"], "orderhub_step_seconds_count") > 0
    assert total(measured["orchestrator"], "orderhub_step_seconds_sum") > 0
    assert total(measured["orchestrator"], "orderhub_sagas_ended_total", saga_type="place_order",
                 status="completed") > 0

    for port in measured.values():
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            if not family.name.startswith("orderhub_"):
                continue
            for sample in family.samples:
                for label, value in sample.labels.items():
                    assert not re.match(r"[0-9a-f]{8}-", value), (sample.name, label, value)
                    if label == "step":
                        assert value in STEPS
                    if label == "outcome" and family.name != "orderhub_step_seconds":
                        assert value in OUTCOMES, (sample.name, value)


def test_a_retried_command_is_counted_as_a_retry_and_its_retries_by_kind(live):
    """tok_flaky: the provider times out, the worker retries under the step's policy."""
    port = free_port()
    payments = Cluster(live.env | {"ORDERHUB_METRICS_PORT": str(port)}, LOG_DIR)
    payments.start("payments", index=7)
    try:
        eventually(lambda: _up(port), timeout=30, message="the payments worker's metrics")
        sku = product(stock=50)
        client = api_client()
        for _ in range(30):
            order = wait_ended(place(client, sku=sku, token="tok_flaky")["id"], timeout=30)
            assert order.status == "completed"
            if total(port, "orderhub_retries_total", type="payments.authorize", kind="transient"):
                break
        assert total(port, "orderhub_retries_total", type="payments.authorize", kind="transient") > 0
        assert total(port, "orderhub_commands_total", type="payments.authorize", outcome="retry") > 0
        assert total(port, "orderhub_commands_total", outcome="error") == 0
    finally:
        payments.stop_all()


def _up(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).ok
    except requests.ConnectionError:
        return False


def test_the_api_counts_its_requests_from_every_gunicorn_worker(api_process):
    """gunicorn runs two worker processes; /metrics, answered by either, counts both's requests."""
    api = api_process(ORDERHUB_API_WORKERS="2")
    sku = product(stock=50)

    def served(route, status):
        response, _ = api.timed("GET", "/metrics")
        return sum(sample.value for family in text_string_to_metric_families(response.text)
                   for sample in family.samples
                   if sample.name == "orderhub_api_requests_total" and sample.labels.get("route") == route
                   and sample.labels.get("status") == status)

    placed = []
    for _ in range(12):
        response, _ = api.place(sku)
        assert response.status_code == 202
        placed.append(response.json()["id"])
    missing, _ = api.timed("GET", "/api/orders/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code == 404
    # Every one of the 12, whichever worker took it and whichever answers the scrape.
    assert served("api/orders/", "202") == 12
    response, _ = api.timed("GET", "/metrics")
    assert sum(sample.value for family in text_string_to_metric_families(response.text) for sample in family.samples
               if sample.name == "orderhub_sagas_started_total" and sample.labels == {"saga_type": "place_order"}) == 12
    assert served("api/orders/<pk>/", "404") == 1
    response, _ = api.timed("GET", "/metrics")
    for family in text_string_to_metric_families(response.text):
        if family.name in ("orderhub_api_requests", "orderhub_api_request_seconds"):
            for sample in family.samples:
                assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}", sample.labels.get("route", "")), sample
    for order_id in placed:  # nothing left running when the test's data is flushed
        wait_ended(order_id, timeout=60)
