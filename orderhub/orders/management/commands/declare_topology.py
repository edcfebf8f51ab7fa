"""Declare RabbitMQ's exchanges, queues and bindings (every process also does it at start)."""
from django.core.management.base import BaseCommand

from orderhub import topology
from orderhub.celery import app


class Command(BaseCommand):
    help = "Declare the RabbitMQ topology idempotently."

    def handle(self, *args, **options):
        topology.ensure_declared(app)
        for queue in topology.QUEUE_BINDINGS:
            self.stdout.write(f"{queue} (dead letters: {topology.dlq_name(queue)})")
