"""Operate sagas from a shell: list, show one's timeline, retry, cancel, resolve. Every action goes
through the same function as the admin's (orderhub/console/actions.py) and is audited with the OS
user."""
from django.core.management.base import BaseCommand, CommandError

from orderhub.console import actions, timeline
from sagas.models import SagaInstance, SagaStatus


class Command(BaseCommand):
    help = "sagas list [--status S] | show ID | retry ID --reason R | cancel ID --reason R | resolve ID --reason R"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="sagas, newest first")
        listing.add_argument("--status", choices=SagaStatus.values)
        listing.add_argument("--limit", type=int, default=50)
        show = sub.add_parser("show", help="one saga's timeline, the steps still to come and its audit trail")
        show.add_argument("id")
        for name, text in [
            ("retry", "resume a compensation_failed saga (its failed compensation is sent again) or a stuck one "
                      "(its forward step gets a new attempt)"),
            ("cancel", "ask a saga that has not reached its pivot to stop and compensate"),
            ("resolve", "close a stuck or compensation_failed saga dealt with by hand: it and its order become "
                        "resolved, keeping the failure reason"),
        ]:
            action = sub.add_parser(name, help=text)
            action.add_argument("id")
            action.add_argument("--reason", required=True, help="why (kept in the audit trail)")

    def handle(self, *args, action, **options):
        if action == "list":
            sagas = SagaInstance.objects.order_by("-created_at")
            if options["status"]:
                sagas = sagas.filter(status=options["status"])
            for saga in sagas[: options["limit"]]:
                self.stdout.write(f"{saga.id}  {saga.saga_type:12} {saga.status:20} {saga.failure_reason or '-':20} "
                                  f"{saga.created_at:%Y-%m-%d %H:%M:%S}")
            return
        if action == "show":
            return self._show(options["id"])
        run = {"retry": actions.retry_saga, "cancel": actions.cancel_saga, "resolve": actions.resolve_saga}[action]
        try:
            result = run(actions.Actor.from_shell(), options["id"], options["reason"])
        except actions.ActionRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(result.message)

    def _show(self, saga_id):
        try:
            view = timeline.for_saga(saga_id)
        except actions.ActionRefused as exc:
            raise CommandError(str(exc)) from None
        saga = view.saga
        self.stdout.write(f"saga {saga.id}  {saga.saga_type}  {saga.status}"
                          f"{'  (' + saga.failure_reason + ')' if saga.failure_reason else ''}")
        self.stdout.write(f"correlation {saga.correlation_id}  started {saga.created_at:%Y-%m-%d %H:%M:%S}"
                          f"{'  ended ' + format(saga.ended_at, '%Y-%m-%d %H:%M:%S') if saga.ended_at else ''}")
        self.stdout.write("")
        self.stdout.write(f"{'at':12} {'step':16} {'attempt':>7}  {'what':22} {'outcome':10} {'took':>8}  detail")
        for row in view.rows:
            self.stdout.write(f"{row.at:%H:%M:%S.%f}"[:12] + f" {row.step or '-':16} {row.attempt or '':>7}  "
                              f"{row.what:22} {row.outcome or '':10} {row.took or '':>8}  {row.detail}")
        if view.to_come:
            self.stdout.write("")
            self.stdout.write("still to come: " + ", ".join(view.to_come))
        if view.audit:
            self.stdout.write("")
            self.stdout.write("audit trail:")
            for entry in view.audit:
                self.stdout.write(f"  {entry.at:%Y-%m-%d %H:%M:%S} {entry.operator} ({entry.via}) {entry.action}: "
                                  f"{entry.outcome} — {entry.reason}")
