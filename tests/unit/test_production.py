"""ORDERHUB_ENV=production: a process refuses to start with a secret missing or left at a local
default, and with real values `manage.py check --deploy` is silent; the sandbox's faults are off."""
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REAL = {
    "ORDERHUB_ENV": "production",
    "ORDERHUB_SECRET_KEY": "q7V#n2f!Lx9@pR4s$Tz8^wK1&mB6*hY3(cJ0)dG5-eA_uN+iO=lQ",
    "ORDERHUB_DB_PASSWORD": "db-Zk38fh2",
    "ORDERHUB_BROKER_URL": "amqp://orderhub:mq-Xq92kd@rabbitmq:5672//",
    "ORDERHUB_RABBITMQ_MANAGEMENT_URL": "http://orderhub:mq-Xq92kd@rabbitmq:15672/api/",
    "ORDERHUB_REDIS_URL": "redis://:rd-83jdK2@redis:6379/0",
    "ORDERHUB_METRICS_TOKEN": "mt-9dk2Lq",
    "ORDERHUB_ALLOWED_HOSTS": "orders.example.com",
    "ORDERHUB_CSRF_TRUSTED_ORIGINS": "https://orders.example.com",
}


def manage(*args, **env):
    # Not this session's ORDERHUB_* nor DJANGO_ALLOW_ASYNC_UNSAFE (the browser test sets it; a deployment must not).
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ORDERHUB_", "FLOWER_")) and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean | env, capture_output=True,
                          text=True, timeout=120)


def test_production_with_the_local_defaults_refuses_to_start_and_names_every_variable():
    started = manage("check", ORDERHUB_ENV="production")
    assert started.returncode != 0
    for name in ("ORDERHUB_SECRET_KEY", "ORDERHUB_DB_PASSWORD", "ORDERHUB_BROKER_URL",
                 "ORDERHUB_RABBITMQ_MANAGEMENT_URL", "ORDERHUB_REDIS_URL", "ORDERHUB_METRICS_TOKEN"):
        assert name in started.stderr, (name, started.stderr[-2000:])
    assert "refuses to start" in started.stderr


@pytest.mark.parametrize("name, value", [
    ("ORDERHUB_SECRET_KEY", "compose-local-only-insecure-key"),
    ("ORDERHUB_SECRET_KEY", "short-but-not-a-default"),
    ("ORDERHUB_BROKER_URL", "amqp://orderhub:orderhub-local-only@rabbitmq:5672//"),
    ("ORDERHUB_REDIS_URL", "redis://redis:6379/0"),
    ("FLOWER_BASIC_AUTH", "operator:operator-local-only"),
    ("ORDERHUB_OPERATOR_PASSWORD", "operator-local-only"),
])
def test_one_default_left_is_enough_to_refuse_and_its_value_is_never_shown(name, value):
    started = manage("check", **REAL | {name: value})
    assert started.returncode != 0 and name in started.stderr
    assert value not in started.stderr


def test_with_real_values_check_deploy_is_silent():
    checked = manage("check", "--deploy", "--fail-level", "WARNING", **REAL)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout


@pytest.mark.django_db(databases="__all__")
def test_with_the_sandbox_off_a_fault_token_is_an_ordinary_card(settings):
    from workers.payments import provider

    settings.SANDBOX = False
    for token in ("tok_timeout", "tok_ambiguous", "tok_flaky", "tok_void_broken"):
        outcome = provider.authorize(token=token, amount=Decimal("5.00"), idempotency_key=f"prod-{token}")
        assert outcome.approved
        assert provider.authorize(token=token, amount=Decimal("5.00"), idempotency_key=f"prod-{token}") == outcome
    void_broken = provider.charge_for("prod-tok_void_broken")
    assert provider.capture(ref=void_broken.ref).approved
    settings.SANDBOX = True
    with pytest.raises(provider.ProviderTimeout):
        provider.authorize(token="tok_timeout", amount=Decimal("5.00"), idempotency_key="sandbox-tok_timeout")


def test_the_cache_stores_json_and_never_unpickles_what_it_reads():
    import pickle

    from django.core.cache import cache

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/orderhub-pickle-ran",))

    cache.set("prod-test:list", [1.5, "a", {"b": None}], 30)
    assert cache.get("prod-test:list") == [1.5, "a", {"b": None}]
    raw = cache._cache.get_client("prod-test:list").get(cache.make_and_validate_key("prod-test:list"))
    assert raw == b'[1.5,"a",{"b":null}]'
    assert cache.incr("prod-test:count", 1) if cache.add("prod-test:count", 1, 30) else True
    cache._cache.get_client("prod-test:evil", write=True).set(cache.make_and_validate_key("prod-test:evil"),
                                                               pickle.dumps(Boom()))
    assert cache.get("prod-test:evil") is None
    assert not Path("/tmp/orderhub-pickle-ran").exists()


def test_a_retried_command_shows_monitors_no_payment_token_or_address(monkeypatch):
    """A command put back for a retry is published again by Celery: its arguments' text (what Flower
    shows) is withheld, as for the first publish."""
    from celery.canvas import Signature
    from celery.exceptions import Retry

    from contracts import Command
    from workers import messaging
    from workers.payments import tasks as payments_tasks  # noqa: F401  (registers the tasks)
    from orderhub.celery import app

    sent = []
    monkeypatch.setattr(Signature, "apply_async", lambda self, *a, **kw: sent.append(dict(self.options)))
    command = Command(type="payments.authorize", saga_id="8d0f7a51-7c4f-4a57-9a38-5b0f0f7f6c11", step="authorize",
                      payload={"order_id": "8d0f7a51-7c4f-4a57-9a38-5b0f0f7f6c11", "total": "5.00",
                               "payment_token": "tok_secret_card", "shipping_address": {"city": "Oslo"}})
    task = app.tasks["payments.authorize"]
    task.push_request(id=command.message_id, args=[command.to_dict()], kwargs={}, delivery_info={}, retries=0,
                      called_directly=False)
    try:
        with pytest.raises(Retry):
            messaging._retry(task, command, messaging.TransientError("timeout"), {"transient": 0,
                                                                                 "infrastructure": 0},
                             "transient", command.retry_policy)
    finally:
        task.pop_request()
    [options] = sent
    assert options["argsrepr"] == "[<payments.authorize body withheld>]" and options["kwargsrepr"] == "{}"
    assert "tok_secret_card" not in str(options) and "Oslo" not in str(options)
