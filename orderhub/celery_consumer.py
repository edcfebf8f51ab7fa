"""Celery's consumer, changed in one place: an undecodable message is dead-lettered, not acked away.

Celery's default `on_decode_error` acknowledges a message it cannot decode, which would delete it
without trace. Rejecting without requeue sends it to the queue's dead-letter exchange instead.
"""
import logging

from celery.worker.consumer import Consumer as CeleryConsumer

log = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    def on_decode_error(self, message, exc):
        log.error(
            "undecodable message dead-lettered: %s (content_type=%s headers=%r)",
            exc,
            message.content_type,
            message.headers,
        )
        message.reject(requeue=False)
