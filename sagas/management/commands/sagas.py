"""Operate sagas: list them by status, resume one whose compensation failed or whose forward step is stuck."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from sagas import engine
from sagas.models import SagaInstance, SagaStatus


class Command(BaseCommand):
    help = "sagas list [--status S] | retry ID"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="sagas, newest first")
        listing.add_argument("--status", choices=SagaStatus.values)
        listing.add_argument("--limit", type=int, default=50)
        retry = sub.add_parser("retry", help="resume a compensation_failed saga (its failed compensation is sent "
                                             "again) or a stuck one (its forward step gets a new attempt)")
        retry.add_argument("id")

    def handle(self, *args, action, **options):
        if action == "list":
            sagas = SagaInstance.objects.order_by("-created_at")
            if options["status"]:
                sagas = sagas.filter(status=options["status"])
            for saga in sagas[: options["limit"]]:
                self.stdout.write(f"{saga.id}  {saga.saga_type:12} {saga.status:20} {saga.failure_reason or '-':20} "
                                  f"{saga.created_at:%Y-%m-%d %H:%M:%S}")
            return
        try:
            saga = engine.saga_retry(saga_id=options["id"])
        except (SagaInstance.DoesNotExist, ValidationError):
            raise CommandError(f"no saga {options['id']}") from None
        except engine.SagaNotRetriable as exc:
            raise CommandError(str(exc)) from None
        doing = "compensating" if saga.status == "compensating" else "retrying"
        self.stdout.write(f"saga {saga.id} resumed: {doing} step {saga.current_step}")
