"""The sales projection: consume (the projections process), rebuild, check."""
from django.core.management.base import BaseCommand

from orderhub import topology
from orderhub.celery import app
from orderhub.reports import projection


class Command(BaseCommand):
    help = "projections consume | rebuild | check"

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["consume", "rebuild", "check"],
                            help="consume: apply order events as they come (runs until stopped); rebuild: replace "
                                 "the projection with the numbers computed from the orders; check: compare the two, "
                                 "change nothing (exit 1 if they differ)")

    def handle(self, *args, action, **options):
        if action == "consume":
            from orderhub.reports.consumer import Projector

            with app.connection_for_read() as connection:
                topology.declare(connection)
                self.stdout.write(f"applying order events from {projection.QUEUE}")
                Projector(connection).run()
        elif action == "rebuild":
            report = projection.rebuild()
            self.stdout.write(f"rebuilt from the orders: {len(report['by_day'])} days, {len(report['by_sku'])} "
                              f"day/sku rows, outcomes {report['by_outcome']}")
        else:
            held, truth = projection.from_projection(), projection.from_orders()
            if held == truth:
                self.stdout.write(f"the projection equals a rebuild from the orders (outcomes {truth['by_outcome']})")
                return
            for part in ("by_day", "by_sku", "by_outcome"):
                if held[part] != truth[part]:
                    self.stdout.write(f"{part} differs: projection {held[part]!s:.500} / orders {truth[part]!s:.500}")
            raise SystemExit(1)
