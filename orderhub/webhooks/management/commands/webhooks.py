"""Client webhooks: run the webhooks process; list endpoints and deliveries."""
from django.core.management.base import BaseCommand

from orderhub import topology
from orderhub.celery import app
from orderhub.webhooks import services
from orderhub.webhooks.models import WebhookDelivery


class Command(BaseCommand):
    help = "webhooks run | status"

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["run", "status"],
                            help="run: the webhooks process (fan out order events, send deliveries; runs until "
                                 "stopped); status: deliveries by status, and the dead ones")

    def handle(self, *args, action, **options):
        if action == "run":
            from orderhub.webhooks.consumer import run

            with app.connection_for_read() as connection:
                topology.declare(connection)
                self.stdout.write(f"delivering webhooks for events on {services.QUEUE}")
                run(connection)
            return
        counts = {status: WebhookDelivery.objects.filter(status=status).count()
                  for status in WebhookDelivery.Status.values}
        self.stdout.write(" ".join(f"{status}={n}" for status, n in counts.items()))
        for row in WebhookDelivery.objects.select_related("endpoint").filter(status="dead")[:50]:
            self.stdout.write(f"dead {row.id} {row.event_type} order {row.order_id} -> {row.endpoint.url} "
                              f"after {row.attempts}: {row.last_error}")
