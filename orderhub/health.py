"""Health endpoint: is each dependency (every database, the broker, the cache) reachable?"""
from django.core.cache import cache
from django.db import connections
from django.http import JsonResponse


def _check_databases():
    for alias in connections:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")


def _check_broker():
    from orderhub.celery import app

    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)


def _check_cache():
    cache.set("health", "ok", 5)
    if cache.get("health") != "ok":
        raise RuntimeError("cache did not return what was written")


CHECKS = {"database": _check_databases, "broker": _check_broker, "cache": _check_cache}


def health(request):
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # a health check reports every failure, whatever its kind
            results[name] = f"error: {exc.__class__.__name__}: {exc}"
    healthy = all(v == "ok" for v in results.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "checks": results}, status=200 if healthy else 503)
