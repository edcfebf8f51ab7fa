"""Publishing onto the bus: persistent, confirmed, routed by message type on the topic exchange."""
from orderhub import topology


def publish(message_type: str, body: dict, *, message_id: str, routing_key: str | None = None):
    """Publish one message; `routing_key` overrides the type as the route (a marker that must
    queue behind the replies)."""
    from orderhub.celery import app

    topology.ensure_declared(app)
    app.send_task(
        message_type,
        args=[body],
        task_id=message_id,
        # Celery would otherwise repr the whole body into the headers for monitoring (CPU on every
        # publish, and payment tokens and addresses shown in Flower).
        argsrepr=f"[<{message_type} body withheld>]",
        kwargsrepr="{}",
        **({"routing_key": routing_key} if routing_key else {}),
        # Give up quickly: the caller keeps the message (outbox row, inbox reply) and tries again.
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
    )


def queue_backlog(queue_name: str) -> int:
    """Messages waiting undelivered in a queue (a passive declare on a pooled connection)."""
    from orderhub.celery import app

    with app.pool.acquire(block=True, timeout=2) as connection:
        channel = connection.channel()  # its own channel: an error closes it, not the publishers'
        try:
            return channel.queue_declare(queue=queue_name, passive=True).message_count
        finally:
            channel.close()
