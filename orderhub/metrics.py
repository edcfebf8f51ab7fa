"""Prometheus metrics read at scrape time (`GET /metrics`): the state of the whole system as the
databases, Redis and RabbitMQ hold it, so any one API process can answer for all of it.

- orders by status and failure reason, sagas by type and status;
- the outbox: rows unpublished, the age of the oldest;
- beat: seconds since the orchestrator saw its last tick;
- every queue of the topology (dead-letter queues included): messages ready and consumers;
- the dead-letter archive by queue and status;
- counters kept in Redis: admission refusals, parked dead letters, malformed ticks.

Labels are bounded (statuses, reasons, saga types, queue names): never an id. A part that cannot
be read (a database down) is left out and counted in `orderhub_scrape_errors{part}`; the rest is
still served. `ORDERHUB_METRICS_TOKEN`, when set, is required as `Authorization: Bearer <token>`.
The API's own metrics follow: its requests by route and status (orderhub/request_metrics.py),
from every gunicorn worker (multiprocess mode, set up by gunicorn.conf.py).
"""
import os
import time

import structlog
from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = structlog.get_logger(__name__)


class SystemCollector:
    def collect(self):
        errors = GaugeMetricFamily("orderhub_scrape_errors", "Parts of this scrape that could not be read",
                                   labels=["part"])
        for part, read in [("orders", _orders), ("sagas", _sagas), ("outbox", _outbox), ("beat", _beat),
                           ("queues", _queues), ("dead_letters", _dead_letters), ("counters", _counters),
                           ("admission", _admission),
                           ("circuits", _circuits), ("webhooks", _webhooks)]:
            try:
                yield from list(read())
            except Exception as exc:
                log.warning("metrics: could not read a part", part=part, error=repr(exc))
                errors.add_metric([part], 1)
        yield errors


def _orders():
    from orderhub.orders.models import Order

    family = GaugeMetricFamily("orderhub_orders", "Orders by status and failure reason",
                               labels=["status", "failure_reason"])
    for status, reason, n in (Order.objects.values_list("status", "failure_reason")
                              .annotate(n=Count("id")).order_by()):
        family.add_metric([status, reason or ""], n)
    yield family


def _sagas():
    from sagas.models import SagaInstance

    family = GaugeMetricFamily("orderhub_sagas", "Sagas by type and status", labels=["saga_type", "status"])
    for saga_type, status, n in SagaInstance.objects.values_list("saga_type", "status").annotate(n=Count("id")).order_by():
        family.add_metric([saga_type, status], n)
    yield family


def _admission():
    from orderhub.orders import admission

    now = admission.estimate()
    yield GaugeMetricFamily("orderhub_admission_predicted_wait_seconds",
                            "The wait a new order would meet: sagas in flight / drain rate (NaN while not predicted: "
                            "too few in flight, or nothing drains)",
                            value=float("nan") if now.predicted_wait is None else now.predicted_wait)
    yield GaugeMetricFamily("orderhub_admission_target_seconds",
                            "The predicted wait past which a new order is refused (0: off)",
                            value=settings.ADMISSION_TARGET_SECONDS)
    yield GaugeMetricFamily("orderhub_admission_drain_rate",
                            "Sagas ended per second over the admission window", value=now.drain_rate)
    yield GaugeMetricFamily("orderhub_admission_in_flight", "Sagas running or compensating", value=now.in_flight)
    yield GaugeMetricFamily("orderhub_admission_stalled",
                            "1 while sagas are in flight and none ended in the admission window (an outage)",
                            value=int(now.stalled))


def _outbox():
    from sagas.models import OutboxMessage

    waiting = OutboxMessage.objects.filter(published_at__isnull=True).aggregate(n=Count("id"), oldest=Min("created_at"))
    yield GaugeMetricFamily("orderhub_outbox_unpublished", "Outbox rows not yet published", value=waiting["n"])
    age = (timezone.now() - waiting["oldest"]).total_seconds() if waiting["oldest"] else 0.0
    yield GaugeMetricFamily("orderhub_outbox_oldest_unpublished_age_seconds",
                            "Age of the oldest unpublished outbox row (0 when none)", value=age)


def _beat():
    from orderhub import health

    age = health._beat_last_tick_age()
    if age is not None:  # never seen: the series is absent (the alert rule says so)
        yield GaugeMetricFamily("orderhub_beat_last_tick_age_seconds",
                                "Seconds since the orchestrator saw beat's last tick", value=age)


def _queues():
    from orderhub import rabbitmq_api, topology

    response = rabbitmq_api.get(f"queues/{rabbitmq_api.vhost_path()}"
                                "?columns=name,messages_ready,messages_unacknowledged,consumers", timeout=2)
    response.raise_for_status()
    ours = set(topology.QUEUE_BINDINGS) | set(topology.EVENT_SUBSCRIBERS) | {
        topology.dlq_name(q) for q in topology.DEAD_LETTERED} | {
        topology.PARKING_QUEUE}
    ready = GaugeMetricFamily("orderhub_queue_messages_ready", "Messages waiting in a queue", labels=["queue"])
    unacked = GaugeMetricFamily("orderhub_queue_messages_unacked", "Messages delivered, not yet acked",
                                labels=["queue"])
    consumers = GaugeMetricFamily("orderhub_queue_consumers", "Consumers of a queue", labels=["queue"])
    for queue in response.json():
        if queue["name"] in ours:
            ready.add_metric([queue["name"]], queue.get("messages_ready", 0))
            unacked.add_metric([queue["name"]], queue.get("messages_unacknowledged", 0))
            consumers.add_metric([queue["name"]], queue.get("consumers", 0))
    yield from (ready, unacked, consumers)


def _dead_letters():
    from orderhub.deadletters.models import DeadLetter

    family = GaugeMetricFamily("orderhub_dead_letters", "The dead-letter archive by original queue and status",
                               labels=["queue", "status"])
    from orderhub import topology

    known, counts = set(topology.QUEUE_BINDINGS) | set(topology.EVENT_SUBSCRIBERS), {}
    for queue, status, n in DeadLetter.objects.values_list("queue", "status").annotate(n=Count("id")).order_by():
        key = (queue if queue in known else "other", status)  # a forged x-death must not mint labels
        counts[key] = counts.get(key, 0) + n
    for labels, n in sorted(counts.items()):
        family.add_metric(list(labels), n)
    yield family


def _webhooks():
    from orderhub.webhooks.models import WebhookDelivery

    family = GaugeMetricFamily("orderhub_webhook_deliveries", "Webhook deliveries waiting (pending) or given up "
                                                              "on (dead, dead-lettered)", labels=["status"])
    for status in ("pending", "dead"):
        family.add_metric([status], WebhookDelivery.objects.filter(status=status).count())
    yield family
    oldest = WebhookDelivery.objects.filter(status="pending").aggregate(at=Min("created_at"))["at"]
    yield GaugeMetricFamily("orderhub_webhook_oldest_pending_age_seconds",
                            "Age of the oldest webhook delivery not delivered yet",
                            value=(timezone.now() - oldest).total_seconds() if oldest else 0)


def _circuits():
    from workers.payments import circuit

    family = GaugeMetricFamily("orderhub_circuit_state", "A circuit breaker's state: 0 closed, 1 half-open, 2 open",
                               labels=["circuit"])
    current = circuit.state()
    if current != "off":  # the breaker is not in use: no series (the alert stays quiet)
        family.add_metric([circuit.NAME], circuit.STATES.get(current, 0))
    yield family


def _counters():
    from orderhub import counters
    from orderhub.celery_consumer import MALFORMED_TICKS_KEY
    from orderhub.deadletters.reasons import PARKED_COUNT_KEY
    from orderhub.orders.admission import REFUSED_KEY

    for name, key, text in [
        ("orderhub_admission_refused", REFUSED_KEY, "Orders refused at the door (503 overloaded)"),
        ("orderhub_dead_letters_parked", PARKED_COUNT_KEY, "Dead letters the archive could not store"),
        ("orderhub_ticks_malformed", MALFORMED_TICKS_KEY, "Malformed ticks dropped"),
    ]:
        yield CounterMetricFamily(name, text, value=counters.read(key))


_system = CollectorRegistry(auto_describe=False)
_system.register(SystemCollector())


def _own_registry():
    """This process's metrics; under gunicorn, every worker's (multiprocess mode, gunicorn.conf.py)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def metrics(request):
    token = getattr(settings, "METRICS_TOKEN", "")
    if token and request.headers.get("Authorization") != f"Bearer {token}":
        return HttpResponse("metrics need Authorization: Bearer <ORDERHUB_METRICS_TOKEN>\n", status=401,
                            content_type="text/plain")
    started = time.monotonic()
    body = generate_latest(_system) + generate_latest(_own_registry())
    log.debug("metrics scraped", seconds=round(time.monotonic() - started, 3))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
