"""What operators rely on: Flower (authenticated, listing every worker) and the health endpoint."""
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests
from django.conf import settings

from tests.conftest import eventually
from tests.integration.conftest import LOG_DIR, PROCESSES, ROOT

pytestmark = [pytest.mark.integration]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def flower(cluster):
    port = free_port()
    log = open(LOG_DIR / "flower.log", "ab")
    proc = subprocess.Popen(
        # As the Procfile and docker-compose.yml start it: its credentials in its environment only.
        [sys.executable, "-m", "celery", "-A", "orderhub", "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT, env=cluster.env | {"FLOWER_BASIC_AUTH": "ops:secret-for-test",
                                     "FLOWER_BROKER_API": settings.RABBITMQ_MANAGEMENT_URL},
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_flower_requires_authentication_and_lists_every_worker(flower):
    expected = {f"{name}-1@{os.uname().nodename}" for name in PROCESSES}

    def listed_workers():
        try:
            response = requests.get(f"{flower}/api/workers?refresh=1", auth=("ops", "secret-for-test"), timeout=5)
        except requests.ConnectionError:
            return None
        return expected <= set(response.json()) if response.ok else None

    eventually(listed_workers, timeout=30, interval=0.5, message="Flower to list every worker")
    assert requests.get(f"{flower}/api/workers", timeout=5).status_code == 401
    assert requests.get(f"{flower}/api/workers", auth=("ops", "wrong"), timeout=5).status_code == 401


@pytest.mark.django_db(databases="__all__")
def test_health_reports_every_dependency(client, admin_user):
    client.force_login(admin_user)  # the details are for staff (or the health token)
    response = client.get("/health/")

    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "cache": "ok"}


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_health_sees_beat_ticking_and_the_archiver_consuming_every_dead_letter_queue(live, client, admin_user):
    client.force_login(admin_user)

    def healthy():
        body = client.get("/health/ready/").json()
        return body if body["status"] == "ok" else None

    body = eventually(healthy, timeout=20, message="health without warnings")
    assert body["system"]["beat_last_tick_age_s"] < 10
    assert body["system"]["dlq_consumers"] and all(body["system"]["dlq_consumers"].values())
    assert client.get("/health/live/").status_code == 200


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_with_beat_stopped_its_alert_expression_becomes_true_and_clears_when_it_is_back(live, client):
    """The BeatSilent rule's threshold (deploy/prometheus/alerts.yml) against what /metrics serves
    while beat is stopped, then started again."""
    import re

    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]
    expr = next(rule["expr"] for rule in rules if rule["alert"] == "BeatSilent")
    threshold = float(re.search(r"orderhub_beat_last_tick_age_seconds > ([0-9.]+)", expr).group(1))

    def tick_age():
        for family in text_string_to_metric_families(client.get("/metrics").content.decode()):
            if family.name == "orderhub_beat_last_tick_age_seconds":
                return family.samples[0].value
        return None

    eventually(lambda: (age := tick_age()) is not None and age < threshold, timeout=20,
                      message="beat ticking")
    live.kill("beat-1", signal.SIGTERM)
    try:
        eventually(lambda: (tick_age() or 0) > threshold, timeout=threshold + 20, interval=0.5,
                   message=f"the tick age past {threshold} s with beat stopped")
    finally:
        live.start("beat")
    eventually(lambda: (age := tick_age()) is not None and age < threshold, timeout=30, interval=0.5,
               message="the alert expression false again once beat is back")


def test_the_healthchecks_pass_for_the_running_processes(live):
    from django.core.management import call_command

    for args in (["worker", "orchestrator-1"], ["worker", "payments-1"], ["beat"], ["archiver"]):
        def passes(args=args):
            try:
                call_command("healthcheck", *args)
            except SystemExit as exc:
                return exc.code == 0
            return True

        eventually(passes, timeout=20, interval=0.5, message=f"healthcheck {' '.join(args)}")


def test_flowers_healthcheck_needs_no_password(flower):
    from django.core.management import call_command

    def passes():
        try:
            call_command("healthcheck", "flower", flower, "--timeout", "2")
        except SystemExit as exc:
            return exc.code == 0
        return True

    eventually(passes, timeout=30, interval=0.5, message="flower's healthcheck once it is up")
