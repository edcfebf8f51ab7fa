"""A rolling deploy with sagas in flight, and its rollback, through real processes (docs/upgrading.md,
Upgrading). Release B (tests/support/release_b.py) inserts a step into place_order (v2) and
renames a field of shipping.create's payload (v2). While orders stream in, with some that
compensate, the processes are replaced one at a time in the documented order: workers, then the
orchestrator, then the API; then rolled back in reverse: the API, the orchestrator once no v2
saga is left, the workers. Every order ends as its token says, sagas started under A run A's
steps and those started under B run B's, and nothing is dead-lettered."""
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from orderhub.deadletters.models import DeadLetter
from orderhub.orders.models import Order
from sagas import engine
from sagas.models import SagaInstance
from tests.conftest import eventually
from tests.integration.conftest import LOG_DIR
from tests.integration.conftest import TestCluster as Processes
from tests.integration.helpers import ADDRESS, product
from tests.support.cluster import WORKERS

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]
RELEASE_B = {"ORDERHUB_EXTENSIONS": "tests.support.release_b"}
DOMAINS = ["inventory", "payments", "shipping", "notifications"]
V1_STEPS = ["reserve_stock", "authorize", "create_shipment", "capture", "notify"]
V2_STEPS = ["reserve_stock", "authorize", "check_address", "create_shipment", "capture", "notify"]
# token, country -> the order's end
KINDS = [("tok_ok", "GB", ("completed", None)), ("tok_declined", "GB", ("failed", "payment_declined")),
         ("tok_ok", "AQ", ("failed", "address_unsupported")), ("tok_ok", "FR", ("completed", None))]


class Stream(threading.Thread):
    """Places an order every 0.2 s through whichever API `api` is now; remembers each one with the
    end its token and country call for, and which API release took it."""

    def __init__(self, api, release, session):
        super().__init__(daemon=True)
        self.api, self.release, self.session, self.sku = api, release, session, None
        self.placed, self.errors = [], []
        self.stopping = threading.Event()

    def switch(self, api, release):
        self.api, self.release = api, release

    def run(self):
        n = 0
        while not self.stopping.is_set():
            token, country, expected = KINDS[n % len(KINDS)]
            body = {"items": [{"sku": self.sku, "quantity": 1}], "payment_token": token,
                    "shipping_address": ADDRESS | {"country": country}}
            api, release = self.api, self.release
            try:
                response = self.session.post(api.base + "/api/orders/", json=body, timeout=10)
            except requests.RequestException as exc:  # an API being stopped: the next one takes over
                self.errors.append(repr(exc))
                time.sleep(0.2)
                continue
            if response.status_code == 202:
                self.placed.append((response.json()["id"], expected, release))
                n += 1
            else:
                self.errors.append(f"{response.status_code} {response.text[:200]}")
            time.sleep(0.2)

    def more(self, count, timeout=30):
        """Wait until `count` more orders are placed."""
        target = len(self.placed) + count
        eventually(lambda: len(self.placed) >= target, timeout=timeout, message=f"{count} more orders placed")


def replace(old_cluster, old_key, new_cluster, name, index, stream):
    """Start the new release's process beside the old one, let both serve, then stop the old one."""
    key = new_cluster.start(name, index=index)
    new_cluster.wait_ready([key])
    stream.more(3)
    old_cluster.kill(old_key, signal.SIGTERM)
    stream.more(2)


def live_v2():
    return engine.live_versions().get(("place_order", 2), 0)


def test_a_rolling_deploy_and_its_rollback_keep_every_saga_on_its_own_release(live, api_process):
    sku = product("SKU-ROLL", stock=100_000)
    release_b = Processes(live.env | RELEASE_B, Path(LOG_DIR))
    api_a = api_process()
    stream = Stream(api_a, "A", api_a.session)
    stream.sku = sku
    try:
        stream.start()
        stream.more(4)
        # Roll forward: the workers (each reads v1 and v2), the orchestrator, then the API.
        for domain in DOMAINS:
            replace(live, f"{domain}-1", release_b, domain, 2, stream)
        replace(live, "orchestrator-1", release_b, "orchestrator", 2, stream)
        api_b = api_process(**RELEASE_B)
        stream.switch(api_b, "B")
        stream.more(12)
        assert live_v2() or SagaInstance.objects.filter(definition_version=2).exists()

        # Roll back in reverse: the API first (new sagas are v1 again), then the orchestrator once
        # no v2 saga is left (release A's would refuse to start), then the workers.
        api_a2 = api_process()
        stream.switch(api_a2, "A")
        stream.more(4)
        eventually(lambda: live_v2() == 0, timeout=60, message="every v2 saga ended")
        live.start("orchestrator")
        live.wait_ready(["orchestrator-1"])
        stream.more(3)
        release_b.kill("orchestrator-2", signal.SIGTERM)
        stream.more(3)
        for domain in DOMAINS:
            replace(release_b, f"{domain}-2", live, domain, 1, stream)
        stream.more(4)
    finally:
        stream.stopping.set()
        stream.join(timeout=15)
        release_b.stop_all()
        for name in WORKERS:  # leave the session's processes as they were
            if f"{name}-1" not in live.procs:
                live.start(name)
        live.wait_ready([f"{name}-1" for name in WORKERS])

    placed = stream.placed
    ids = [order_id for order_id, _, _ in placed]
    eventually(lambda: Order.objects.filter(id__in=ids, status="pending").count() == 0, timeout=90,
               message="every order placed across the roll to end")
    orders = {str(order.id): order for order in Order.objects.filter(id__in=ids)}
    wrong = [(order_id, (orders[order_id].status, orders[order_id].failure_reason), expected)
             for order_id, expected, _ in placed if (orders[order_id].status, orders[order_id].failure_reason) != expected]
    assert not wrong, wrong[:5]

    sagas = {str(s.correlation_id): s for s in SagaInstance.objects.filter(correlation_id__in=ids)}
    for order_id, _, release in placed:
        saga = sagas[order_id]
        steps = [step.name for step in saga.steps.order_by("index")]
        assert (saga.definition_version, steps) == ((2, V2_STEPS) if release == "B" else (1, V1_STEPS)), order_id
    by_release = {release: sum(1 for *_, r in placed if r == release) for release in ("A", "B")}
    assert by_release["A"] >= 20 and by_release["B"] >= 12, by_release
    assert not DeadLetter.objects.exists(), list(DeadLetter.objects.values_list("queue", "reason"))[:5]
