"""Operate the dead-letter archive: consume (the deadletters process), list, replay, discard."""
from django.core.management.base import BaseCommand, CommandError

from orderhub import topology
from orderhub.celery import app
from orderhub.console import actions
from orderhub.deadletters.consumer import Archiver
from orderhub.deadletters.models import DeadLetter
from orderhub.deadletters.reasons import parked_count


class Command(BaseCommand):
    help = ("deadletters consume | list [--all] | replay ID|--all|--queue Q --type T --reason-contains R [--dry-run] --reason WHY | discard ID --reason WHY")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("consume", help="archive every message arriving in a dead-letter queue (runs until stopped)")
        listing = sub.add_parser("list", help="archived dead letters (--all: replayed and discarded too)")
        listing.add_argument("--all", action="store_true")
        replay = sub.add_parser("replay", help="publish archived dead letters again to their original queues: one "
                                               "ID, --all, or those matching --queue/--type/--reason-contains")
        replay.add_argument("id", nargs="?", type=int)
        replay.add_argument("--all", action="store_true", help="every archived (not yet replayed) dead letter")
        replay.add_argument("--queue", help="only from this queue (e.g. payments.commands)")
        replay.add_argument("--type", dest="message_type", help="only this message type (e.g. payments.void)")
        replay.add_argument("--reason-contains", help="only those whose reason contains this text")
        replay.add_argument("--dry-run", action="store_true", help="count what would be replayed; change nothing")
        replay.add_argument("--reason", help="why (kept in the audit trail); required unless --dry-run")
        replay.add_argument("--rate", type=float, help="at most this many a second (default ORDERHUB_REPLAY_RATE)")
        discard = sub.add_parser("discard", help="mark a dead letter as dealt with; it is kept for the record")
        discard.add_argument("id", type=int)
        discard.add_argument("--reason", required=True, help="why (kept in the audit trail)")

    def handle(self, *args, action, **options):
        getattr(self, f"_{action}")(**options)

    def _consume(self, **options):
        from orderhub import process_metrics

        process_metrics.serve_if_asked()  # orderhub_dead_letters_archived_total, on ORDERHUB_METRICS_PORT
        with app.connection_for_read() as connection:
            topology.declare(connection)
            self.stdout.write("archiving dead letters from " + ", ".join(q.name for q in topology.dead_letter_queues()))
            Archiver(connection).run()

    def _list(self, all=False, **options):
        letters = DeadLetter.objects.all() if all else DeadLetter.objects.filter(status=DeadLetter.Status.ARCHIVED)
        self.stdout.write(f"{'id':>6}  {'queue':24} {'type':22} {'deaths':>6}  {'status':9} {'first seen':20} reason")
        for letter in letters.order_by("id"):
            self.stdout.write(
                f"{letter.id:>6}  {letter.queue:24} {letter.message_type or '-':22} {letter.death_count:>6}  "
                f"{letter.status:9} {letter.first_seen:%Y-%m-%d %H:%M:%S}  {letter.reason[:100]}"
            )
        self.stdout.write(f"parked (could not be archived): {parked_count()} so far, "
                          f"{self._parked_now()} waiting in {topology.PARKING_QUEUE}")

    def _parked_now(self):
        try:
            with app.connection_for_read() as connection:
                channel = connection.channel()
                depth = channel.queue_declare(topology.PARKING_QUEUE, passive=True).message_count
                channel.close()
                return depth
        except Exception as exc:  # the listing still helps without the broker
            return f"unknown ({type(exc).__name__})"

    def _replay(self, id=None, all=False, queue=None, message_type=None, reason_contains=None, dry_run=False,
                reason=None, rate=None, **options):
        filtered = bool(queue or message_type or reason_contains)
        if id is not None and (all or filtered):
            raise CommandError("give a dead letter's ID, or --all / filters, not both")
        if id is None and not (all or filtered):
            raise CommandError("give a dead letter's ID, --all, or a filter (--queue, --type, --reason-contains)")
        if id is not None:
            letter = self._letter(id)
            if letter.status != DeadLetter.Status.ARCHIVED:
                self.stdout.write(f"nothing to do: dead letter {id} is {letter.status}")
                return
        selection = actions.ReplaySelection(ids=[id] if id is not None else None, queue=queue,
                                            message_type=message_type, reason_contains=reason_contains)
        preview = actions.replay_preview(selection)
        if dry_run:
            by_queue = ", ".join(f"{q}: {n}" for q, n in preview.by_queue.items()) or "none"
            self.stdout.write(f"dry run: {preview.matching} archived dead letter(s) would be replayed ({by_queue})")
            return
        try:
            report = actions.replay_dead_letters(actions.Actor.from_shell(), selection, reason, rate=rate)
        except actions.ActionRefused as exc:
            raise CommandError(str(exc)) from None
        for letter_id in report.replayed:
            self.stdout.write(f"replayed {letter_id}")
        self.stdout.write(report.message)

    def _discard(self, id, reason=None, **options):
        try:
            result = actions.discard_dead_letter(actions.Actor.from_shell(), id, reason)
        except actions.ActionRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(result.message)

    def _letter(self, id):
        letter = DeadLetter.objects.filter(id=id).first()
        if letter is None:
            raise CommandError(f"no dead letter with id {id}")
        return letter
