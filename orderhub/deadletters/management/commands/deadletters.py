"""Operate the dead-letter archive: consume (the deadletters process), list, replay, discard."""
from django.core.management.base import BaseCommand, CommandError

from orderhub import topology
from orderhub.celery import app
from orderhub.deadletters import services
from orderhub.deadletters.consumer import Archiver
from orderhub.deadletters.models import DeadLetter
from orderhub.deadletters.reasons import parked_count


class Command(BaseCommand):
    help = "deadletters consume | list [--all] | replay ID | replay --all | discard ID"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("consume", help="archive every message arriving in a dead-letter queue (runs until stopped)")
        listing = sub.add_parser("list", help="archived dead letters (--all: replayed and discarded too)")
        listing.add_argument("--all", action="store_true")
        replay = sub.add_parser("replay", help="publish a dead letter again to its original queue")
        replay.add_argument("id", nargs="?", type=int)
        replay.add_argument("--all", action="store_true", help="every archived (not yet replayed) dead letter")
        discard = sub.add_parser("discard", help="mark a dead letter as dealt with; it is kept for the record")
        discard.add_argument("id", type=int)

    def handle(self, *args, action, **options):
        getattr(self, f"_{action}")(**options)

    def _consume(self, **options):
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

    def _replay(self, id=None, all=False, **options):
        if (id is None) == (not all):
            raise CommandError("give a dead letter's ID or --all (not both)")
        letters = (
            list(DeadLetter.objects.filter(status=DeadLetter.Status.ARCHIVED).order_by("id"))
            if all else [self._letter(id)]
        )
        with app.connection_for_write() as connection:
            for letter in letters:
                if letter.status == DeadLetter.Status.DISCARDED:
                    raise CommandError(f"dead letter {letter.id} was discarded")
                services.deadletter_replay(letter=letter, connection=connection)
                self.stdout.write(f"replayed {letter.id} to {letter.queue}")
        if all:
            self.stdout.write(f"replayed {len(letters)} dead letters")

    def _discard(self, id, **options):
        services.deadletter_discard(letter=self._letter(id))
        self.stdout.write(f"discarded {id}")

    def _letter(self, id):
        letter = DeadLetter.objects.filter(id=id).first()
        if letter is None:
            raise CommandError(f"no dead letter with id {id}")
        return letter
