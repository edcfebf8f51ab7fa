"""List what differs between the sagas and each domain's records; --release what no saga owns."""
from django.core.management.base import BaseCommand

from orderhub import reconcile


class Command(BaseCommand):
    help = "reconcile [--release]: what the domains hold that no saga owns (exit 1 if anything)"

    def add_arguments(self, parser):
        parser.add_argument("--release", action="store_true",
                            help="release stock reserved and void authorizations that no saga owns")

    def handle(self, *args, release=False, **options):
        found = reconcile.findings()
        for finding in found:
            self.stdout.write(f"{finding.domain:10} {finding.kind:34} saga {finding.saga_id}  {finding.detail}"
                              f"{'  (releasable)' if finding.releasable else ''}")
        if release and found:
            self.stdout.write(f"released {reconcile.release(found)}")
            found = reconcile.findings()
        self.stdout.write(f"{len(found)} finding{'s' if len(found) != 1 else ''} "
                          f"({sum(f.releasable for f in found)} releasable)")
        if found:
            raise SystemExit(1)
