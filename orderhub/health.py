"""Health endpoint: is each dependency (every database, the broker, the cache) reachable?

Every check runs at once, each in its own thread, and the answer never waits more than
CHECK_BUDGET seconds: a check still running then is reported as timed out. A broker under a
memory or disk alarm accepts connections but blocks every publisher, so the broker check also
asks RabbitMQ's management API for alarms and names the broker `blocked`."""
from concurrent.futures import ThreadPoolExecutor, wait

import requests
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import JsonResponse

CHECK_BUDGET = 2.5
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


class Blocked(Exception):
    pass


def _check_databases():
    try:
        for alias in connections:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
    finally:
        connections.close_all()  # this thread's own connections


def _check_broker():
    from orderhub.celery import app

    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
    response = requests.get(f"{settings.RABBITMQ_MANAGEMENT_URL.rstrip('/')}/health/checks/alarms", timeout=2)
    if response.status_code != 200:
        try:
            reason = response.json().get("reason") or response.text
        except ValueError:
            reason = response.text
        raise Blocked(f"publishers are blocked: {reason}"[:300])


def _check_cache():
    cache.set("health", "ok", 5)
    if cache.get("health") != "ok":
        raise RuntimeError("cache did not return what was written")


CHECKS = {"database": _check_databases, "broker": _check_broker, "cache": _check_cache}


def _describe(exc):
    if isinstance(exc, Blocked):
        return f"blocked: {exc}"
    return f"error: {exc.__class__.__name__}: {exc}"


def health(request):
    futures = {name: _pool.submit(check) for name, check in CHECKS.items()}
    wait(futures.values(), timeout=CHECK_BUDGET)
    results = {}
    for name, future in futures.items():
        if not future.done():
            results[name] = f"error: no answer within {CHECK_BUDGET} s"
        elif future.exception() is not None:
            results[name] = _describe(future.exception())
        else:
            results[name] = "ok"
    healthy = all(v == "ok" for v in results.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "checks": results}, status=200 if healthy else 503)
