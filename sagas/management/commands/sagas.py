"""Operate sagas from a shell: list, show one's timeline, retry, cancel, resolve. Every action goes
through the same function as the admin's (orderhub/console/actions.py) and is audited with the OS
user."""
from django.core.management.base import BaseCommand, CommandError

from orderhub.console import actions, timeline
from sagas.models import SagaInstance, SagaStatus


class Command(BaseCommand):
    help = ("sagas list [--status S] [--version N] | show ID | retry ID --reason R | cancel ID --reason R | "
            "resolve ID --reason R | versions | move (ID... | --from-version N) --to N --reason R")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="sagas, newest first")
        listing.add_argument("--status", choices=SagaStatus.values)
        listing.add_argument("--limit", type=int, default=50)
        listing.add_argument("--version", type=int, help="only sagas pinned to this definition version")
        sub.add_parser("versions", help="the definition versions loaded, and live sagas by version; exit 1 if live "
                                        "sagas are pinned to a version this release does not load")
        move = sub.add_parser("move", help="move live sagas to another version of their definition, where safe "
                                           "(each refused one says why)")
        move.add_argument("ids", nargs="*")
        move.add_argument("--from-version", type=int, help="every live saga pinned to this version")
        move.add_argument("--type", default="place_order", help="with --from-version: the saga type")
        move.add_argument("--to", type=int, required=True)
        move.add_argument("--reason", required=True, help="why (kept in the audit trail)")
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
            if options["version"]:
                sagas = sagas.filter(definition_version=options["version"])
            for saga in sagas[: options["limit"]]:
                self.stdout.write(f"{saga.id}  {saga.saga_type:12} v{saga.definition_version:<3} {saga.status:20} "
                                  f"{saga.failure_reason or '-':20} {saga.created_at:%Y-%m-%d %H:%M:%S}")
            return
        if action == "versions":
            return self._versions()
        if action == "move":
            return self._move(options)
        if action == "show":
            return self._show(options["id"])
        run = {"retry": actions.retry_saga, "cancel": actions.cancel_saga, "resolve": actions.resolve_saga}[action]
        try:
            result = run(actions.Actor.from_shell(), options["id"], options["reason"])
        except actions.ActionRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(result.message)

    def _versions(self):
        from sagas import definitions  # noqa: F401  (loads every definition)
        from sagas import engine

        live = engine.live_versions()
        self.stdout.write(f"{'saga':16} {'version':>7}  {'steps':40} {'live':>6}")
        for (name, version), definition in sorted(engine.VERSIONS.items()):
            starts = "  (new sagas start here)" if engine.starting_definition(name) is definition else ""
            self.stdout.write(f"{name:16} {version:>7}  {', '.join(s.name for s in definition.steps)[:40]:40} "
                              f"{live.get((name, version), 0):>6}{starts}")
        missing = engine.unloaded_versions_in_use()
        for line in missing:
            self.stdout.write(f"NOT LOADED: {line}")
        if missing:
            raise SystemExit(1)

    def _move(self, options):
        ids = list(options["ids"])
        if options["from_version"] is not None:
            from sagas import engine

            ids += [str(i) for i in SagaInstance.objects.filter(
                saga_type=options["type"], definition_version=options["from_version"]).exclude(
                status__in=engine.DONE_STATUSES).values_list("id", flat=True)]
        if not ids:
            raise CommandError("no saga to move: give ids, or --from-version")
        moved = refused = 0
        for saga_id in ids:
            try:
                self.stdout.write(actions.move_saga(actions.Actor.from_shell(), saga_id, options["to"],
                                                    options["reason"]).message)
                moved += 1
            except actions.ActionRefused as exc:
                self.stdout.write(f"refused: {exc}")
                refused += 1
        self.stdout.write(f"{moved} moved, {refused} refused")

    def _show(self, saga_id):
        try:
            view = timeline.for_saga(saga_id)
        except actions.ActionRefused as exc:
            raise CommandError(str(exc)) from None
        saga = view.saga
        self.stdout.write(f"saga {saga.id}  {saga.saga_type} v{saga.definition_version}  {saga.status}"
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
