"""Celery configuration, read lazily by orderhub/celery.py. Values come from Django settings.

Each non-obvious setting links to its documentation:
https://docs.celeryq.dev/en/stable/userguide/configuration.html
"""
from django.conf import settings

from orderhub import topology

broker_url = settings.BROKER_URL
# Publisher confirms: a publish returns only once RabbitMQ has taken the message.
broker_transport_options = {"confirm_publish": True}
broker_connection_retry_on_startup = True
broker_heartbeat = 30
# A channel the broker closes (a quorum queue whose leader is still being elected after a node's
# loss, a queue the cluster still holds for a dead connection) restarts the worker's consumer,
# as a lost connection does, instead of stopping the worker (#broker-channel-error-retry).
broker_channel_error_retry = True

# JSON only: a pickle payload is refused by every consumer (#accept-content).
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
task_default_delivery_mode = "persistent"

# Ack after the work and its reply are durable; a killed worker's message goes back to the queue;
# a failed or timed-out task is rejected to the dead-letter exchange, not acked away
# (#task-acks-late, #task-reject-on-worker-lost, #task-acks-on-failure, #task-acks-on-timeout).
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = False
task_acks_on_timeout = False
# Prefetch 1: a poison message is dead-lettered alone, and load spreads across workers.
worker_prefetch_multiplier = 1

task_queues = topology.celery_queues()
task_default_queue = topology.CONTROL_QUEUE
task_default_exchange = topology.EXCHANGE.name
task_default_exchange_type = "topic"
task_default_routing_key = "saga.control.default"
# Every task name is a message type and its routing key on the topic exchange.
task_routes = ("orderhub.celeryconfig.route_by_name",)
# A typo in a queue name fails loudly instead of creating a queue nobody reads (#task-create-missing-queues).
task_create_missing_queues = False
# Dead-letter undecodable messages instead of acking them (see orderhub/celery_consumer.py).
worker_consumer = "orderhub.celery_consumer:Consumer"
# Task events cost three extra publishes per task; Flower switches them on in the running workers
# when it starts (its --enable-events default), so they are off unless someone is watching.
worker_send_task_events = settings.TASK_EVENTS
task_send_sent_event = False
worker_hijack_root_logger = False
# Celery's Django fixup closes every database connection before and after each task unless this
# is set, so each task paid for new PostgreSQL backends (about 12 per saga). With it set, the fixup
# closes them only every this many tasks; orderhub/celery.py closes broken or old ones before each
# task the way Django does per request (CONN_MAX_AGE, CONN_HEALTH_CHECKS).
CELERY_DB_REUSE_MAX = 1_000_000

# Ticks go to saga.ticks, which drops stale ones (a message TTL) instead of dead-lettering them;
# a per-task `expires` would make RabbitMQ dead-letter every tick that waited too long.
# Any number of beats may run; the one holding the lease ticks (orderhub/beat.py).
beat_scheduler = "orderhub.beat:LeasedScheduler"
beat_schedule = {
    "relay-outbox": {"task": "saga.tick.relay_outbox", "schedule": settings.OUTBOX_RELAY_INTERVAL},
    "sweep-deadlines": {"task": "saga.tick.sweep_deadlines", "schedule": settings.DEADLINE_SWEEP_INTERVAL},
    "purge-expired": {"task": "saga.tick.purge", "schedule": settings.RETENTION_INTERVAL},
}


def route_by_name(name, args, kwargs, options, task=None, **kw):
    return {"exchange": topology.EXCHANGE.name, "exchange_type": "topic", "routing_key": name}
