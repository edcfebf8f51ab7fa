"""Each process's own Prometheus metrics (prometheus_client's default registry): what it did, as
counters and histograms. Served by the process itself on ORDERHUB_METRICS_PORT when that is set
(Celery workers, on start: orderhub/celery.py); `make run` gives each process the port honcho
assigns it (Procfile), docker-compose 9100 in each container. The API serves its own with the
system's at /metrics (orderhub/metrics.py). Labels are bounded: outcomes, step names, message
types, kinds of retry."""
import os

import structlog
from prometheus_client import Counter, Histogram, start_http_server

log = structlog.get_logger(__name__)

SAGAS_STARTED = Counter("orderhub_sagas_started", "Sagas started (committed), by type", ["saga_type"])
SAGAS_ENDED = Counter("orderhub_sagas_ended", "Sagas ended, by type and final status", ["saga_type", "status"])
REPLIES = Counter("orderhub_replies", "Replies the orchestrator handled, by what they did", ["outcome"])
STEP_SECONDS = Histogram("orderhub_step_seconds", "From a step's first command to its end, by step and outcome",
                         ["step", "outcome"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
REPLY_BATCH = Histogram("orderhub_reply_batch_size", "Replies the orchestrator applied in one transaction",
                        buckets=(1, 2, 5, 10, 20, 50, 100, 200))
COMMAND_BATCH = Histogram("orderhub_command_batch_size", "Commands a domain worker handled in one transaction",
                          ["domain"], buckets=(1, 2, 4, 8, 16, 32))
COMMANDS = Counter("orderhub_commands", "Commands a domain worker handled, by type and outcome", ["type", "outcome"])
DEAD_LETTERS = Counter("orderhub_dead_letters_archived",
                       "Dead letters the archiver took in, by original queue and kind of reason", ["queue", "reason"])
RETRIES = Counter("orderhub_retries", "Commands put back for a retry, by type and kind (transient, infrastructure)",
                  ["type", "kind"])


# The kinds of reason a dead letter is archived with (orderhub/deadletters/services.py): the first
# that matches the reason's start, else "other". A label, so a closed list.
REASON_KINDS = [
    ("malformed", "malformed"),
    ("unreadable version", "unreadable_version"),
    ("unknown saga", "unknown_saga"),
    ("webhook undeliverable", "webhook_undeliverable"),
    ("bug:", "handler_error"),
    ("retries exhausted after", "retries_exhausted"),
    ("could not publish the reply", "reply_unpublished"),
    ("rabbitmq: delivery_limit", "delivery_limit"),
    ("rabbitmq: expired", "expired"),
    ("rabbitmq: maxlen", "maxlen"),
    ("rabbitmq: rejected", "rejected"),
]


def reason_kind(reason: str) -> str:
    return next((kind for start, kind in REASON_KINDS if reason.startswith(start)), "other")


def serve_if_asked() -> int | None:
    """Start this process's metrics endpoint on ORDERHUB_METRICS_PORT (unset or 0: none)."""
    wanted = os.environ.get("ORDERHUB_METRICS_PORT") or "0"
    # "auto": the port honcho gives each process of `make run` (PORT), so no two collide.
    port = int(os.environ.get("PORT") or 0) if wanted == "auto" else int(wanted)
    if not port:
        return None
    start_http_server(port, addr=os.environ.get("ORDERHUB_METRICS_ADDR", "127.0.0.1"))
    log.info("metrics served", port=port)
    return port
