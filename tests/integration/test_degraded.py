"""Degraded dependencies through a real API process (gunicorn): a broker that blocks publishers
(a memory alarm) and a Redis that is gone. Every call answers in time, with 202 or 503, never a
hang or a 500, and every accepted order completes once the dependency is back."""
import socket
import subprocess

import pytest
import requests

from tests.conftest import eventually
from tests.integration.api_process import free_port
from tests.integration.helpers import product, wait_ended

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

HEALTH_TOKEN = "degraded-test-health-token"
HEALTH_DETAILS = {"Authorization": f"Bearer {HEALTH_TOKEN}"}  # /health/'s details, not only up/down


def assert_accepted_in_time(api, sku, count):
    accepted = []
    for _ in range(count):
        response, took = api.place(sku)
        assert response.status_code in (202, 503), response.text
        assert took < 1.0, f"POST /api/orders/ took {took:.2f} s"
        if response.status_code == 202:
            accepted.append(response.json()["id"])
    assert accepted, "no order was accepted"
    return accepted


# --- a broker under a memory alarm ------------------------------------------------------------
def rabbitmqctl(*args):
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def alarms():
    from django.conf import settings

    response = requests.get(settings.RABBITMQ_MANAGEMENT_URL.rstrip("/") + "/health/checks/alarms", timeout=5)
    return response.status_code != 200


def test_a_broker_that_blocks_publishers_holds_up_no_request_and_its_orders_go_out_when_it_is_back(
        live, api_process):
    sku = product(stock=50)
    api = api_process(ORDERHUB_HEALTH_TOKEN=HEALTH_TOKEN)
    watermark = rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().").strip()
    watermark = watermark if watermark.replace(".", "", 1).isdigit() else "0.4"  # a fraction to go back to
    try:
        rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1MB")
        eventually(alarms, timeout=30, interval=0.2, message="RabbitMQ's memory alarm")

        accepted = assert_accepted_in_time(api, sku, 5)

        health, took = api.timed("GET", "/health/", headers=HEALTH_DETAILS)
        assert took < 3.0, f"/health/ took {took:.2f} s"
        assert health.status_code == 503
        assert health.json()["checks"]["broker"].startswith("blocked:"), health.json()
    finally:
        rabbitmqctl("set_vm_memory_high_watermark", watermark)

    for order_id in accepted:
        assert wait_ended(order_id, timeout=90).status == "completed"


# --- Redis gone -------------------------------------------------------------------------------
class Redis:
    def __init__(self):
        self.port = free_port()
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL)
        eventually(self._answering, timeout=10, message="the private Redis")

    def _answering(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis():
    redis = Redis()
    redis.start()
    yield redis
    redis.stop()


def test_with_redis_gone_orders_are_still_accepted_and_health_names_the_cache(live, api_process, private_redis):
    sku = product(stock=50)
    api = api_process(ORDERHUB_REDIS_URL=f"redis://127.0.0.1:{private_redis.port}/0",
                      ORDERHUB_HEALTH_TOKEN=HEALTH_TOKEN)
    assert api.place(sku)[0].status_code == 202  # the throttle uses this Redis

    private_redis.stop()
    accepted = assert_accepted_in_time(api, sku, 5)
    health, took = api.timed("GET", "/health/", headers=HEALTH_DETAILS)

    assert took < 3.0, f"/health/ took {took:.2f} s"
    assert health.status_code == 503
    assert health.json()["checks"]["cache"].startswith("error:"), health.json()
    assert health.json()["checks"]["broker"] == "ok"
    for order_id in accepted:
        assert wait_ended(order_id, timeout=60).status == "completed"

    private_redis.start()
    eventually(lambda: api.timed("GET", "/health/", headers=HEALTH_DETAILS)[0].status_code == 200, timeout=20,
               message="health again")
