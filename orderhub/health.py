"""Health endpoints.

- `/health/live/`: the process answers (no dependency is asked). For a liveness probe.
- `/health/` and `/health/ready/`: is each dependency (every database, the broker, the cache)
  reachable? 503 when one is not: this process cannot serve. Beside them, what the rest of the
  system looks like from here, as warnings that do not fail the check (beat's last tick, the
  outbox's oldest unpublished row, whether the dead-letter archiver consumes every DLQ): a silent
  beat is worth an alert, not a restart of the API.

Every check runs at once, each in its own thread, and the answer never waits more than
CHECK_BUDGET seconds: a check still running then is reported as timed out. A broker under a
memory or disk alarm accepts connections but blocks every publisher, so the broker check also
asks RabbitMQ's management API for alarms and names the broker `blocked`.

Who sees what: an anonymous caller gets up or down only (`{"status": ...}`, 200 or 503); the
checks, the readings and the warnings need a staff login or `Authorization: Bearer
<ORDERHUB_HEALTH_TOKEN>` (a probe or a dashboard), and an exception's own text (hosts, users) is
for staff alone. One reading serves every caller of this process for a second (CACHE_SECONDS), so
a flood of probes costs at most one round of checks (one broker connection) a second."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import JsonResponse

from orderhub import rabbitmq_api

log = structlog.get_logger(__name__)

CHECK_BUDGET = 2.5
CACHE_SECONDS = 1.0
BEAT_SILENT_AFTER = 10.0  # seconds without a tick
OUTBOX_LAG_AFTER = 30.0  # seconds an outbox row may wait unpublished
LAST_TICK_KEY = "beat:last_tick"
_pool = ThreadPoolExecutor(max_workers=12, thread_name_prefix="health")


class Blocked(Exception):
    pass


def note_tick():
    """Beat's tick reached the orchestrator (sagas/tasks.py): remember when."""
    try:
        cache.set(LAST_TICK_KEY, time.time(), timeout=None)
    except Exception as exc:
        log.warning("could not note beat's tick", error=repr(exc))


def _check_databases():
    try:
        for alias in connections:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
    finally:
        connections.close_all()  # this thread's own connections


def _management(path):
    return rabbitmq_api.get(path, timeout=2)


def _check_broker():
    from orderhub.celery import app

    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
    response = _management("health/checks/alarms")
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


# --- the rest of the system, as seen from here --------------------------------------------------
def _beat_last_tick_age():
    last = cache.get(LAST_TICK_KEY)
    return None if last is None else round(max(0.0, time.time() - float(last)), 1)


def _outbox_lag():
    from django.utils import timezone

    from sagas.models import OutboxMessage

    oldest = (OutboxMessage.objects.filter(published_at__isnull=True).order_by("created_at")
              .values_list("created_at", flat=True).first())
    return 0.0 if oldest is None else round((timezone.now() - oldest).total_seconds(), 1)


def _outbox_lag_probe():
    try:
        return _outbox_lag()
    finally:
        connections.close_all()  # this thread's own connections


def _dlq_consumers() -> dict[str, int]:
    """Consumers of every dead-letter queue of our vhost (the archiver consumes them all)."""
    from orderhub import topology

    response = _management(f"queues/{rabbitmq_api.vhost_path()}?columns=name,consumers")
    response.raise_for_status()
    consumers = {queue["name"]: queue.get("consumers", 0) for queue in response.json()}
    return {name: consumers.get(name, 0) for name in (topology.dlq_name(q) for q in topology.DEAD_LETTERED)}


def _provider_circuit():
    from workers.payments import circuit

    return circuit.state()


SYSTEM = {"beat_last_tick_age_s": _beat_last_tick_age, "outbox_oldest_unpublished_age_s": _outbox_lag_probe,
          "dlq_consumers": _dlq_consumers, "payments_provider_circuit": _provider_circuit}


def _warnings(system) -> list[str]:
    found = []
    tick = system.get("beat_last_tick_age_s")
    if tick is None:
        found.append("beat: no tick seen (is beat running, and an orchestrator?)")
    elif isinstance(tick, (int, float)) and tick > BEAT_SILENT_AFTER:
        found.append(f"beat: silent for {tick:.0f} s")
    lag = system.get("outbox_oldest_unpublished_age_s")
    if isinstance(lag, (int, float)) and lag > OUTBOX_LAG_AFTER:
        found.append(f"outbox: a row has waited {lag:.0f} s to be published")
    consumers = system.get("dlq_consumers")
    if isinstance(consumers, dict):
        idle = sorted(name for name, count in consumers.items() if not count)
        if idle:
            found.append(f"archiver: nobody consumes {', '.join(idle)}")
    if system.get("payments_provider_circuit") in ("open", "half-open"):
        found.append(f"payments: the provider's circuit is {system['payments_provider_circuit']} "
                     "(payments are held and retried)")
    for name, value in system.items():
        if isinstance(value, str) and value.startswith("error"):
            found.append(f"{name}: {value}")
    return found


def _describe(exc, detailed):
    if isinstance(exc, Blocked):
        return f"blocked: {exc}"
    return f"error: {exc.__class__.__name__}: {exc}" if detailed else f"error: {exc.__class__.__name__}"


def _results(futures, detailed):
    results = {}
    for name, future in futures.items():
        if not future.done():
            results[name] = f"error: no answer within {CHECK_BUDGET} s"
        elif future.exception() is not None:
            results[name] = _describe(future.exception(), detailed)
        else:
            results[name] = future.result()
    return results


_reading_lock = threading.Lock()
_reading: tuple[float, dict] | None = None


def forget():
    """Drop the cached reading (tests)."""
    global _reading
    _reading = None


def _read() -> dict:
    """One round of checks and probes: the answer for each audience (kinds only, or the text too)."""
    checks = {name: _pool.submit(lambda c=check: c() or "ok") for name, check in CHECKS.items()}
    system = {name: _pool.submit(probe) for name, probe in SYSTEM.items()}
    wait([*checks.values(), *system.values()], timeout=CHECK_BUDGET)
    answers = {}
    for detailed in (False, True):
        results, seen = _results(checks, detailed), _results(system, detailed)
        warnings = _warnings(seen)
        healthy = all(v == "ok" for v in results.values())
        status = "degraded" if not healthy else ("warning" if warnings else "ok")
        answers[detailed] = {"status": status, "checks": results, "system": seen, "warnings": warnings}
    return answers


def _cached_reading() -> dict:
    global _reading
    with _reading_lock:  # callers meanwhile wait for this round rather than start their own
        if _reading is None or time.monotonic() - _reading[0] > CACHE_SECONDS:
            _reading = (time.monotonic(), _read())
        return _reading[1]


def _audience(request) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return "staff"
    token = getattr(settings, "HEALTH_TOKEN", "")
    if token and request.headers.get("Authorization", "") == f"Bearer {token}":
        return "token"
    return "anonymous"


def health(request):
    audience = _audience(request)
    answer = _cached_reading()[audience == "staff"]
    code = 503 if answer["status"] == "degraded" else 200
    if audience == "anonymous":
        return JsonResponse({"status": "up" if code == 200 else "down"}, status=code)
    return JsonResponse(answer, status=code)


def live(request):
    return JsonResponse({"status": "alive"})
