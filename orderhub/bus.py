"""Publishing onto the bus: persistent, confirmed, routed by message type on the topic exchange."""
from orderhub import topology


def publish(message_type: str, body: dict, *, message_id: str):
    from orderhub.celery import app

    topology.ensure_declared(app)
    app.send_task(
        message_type,
        args=[body],
        task_id=message_id,
        # Give up quickly: the caller keeps the message (outbox row, inbox reply) and tries again.
        retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
    )
