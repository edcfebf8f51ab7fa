"""API keys: `api_keys create CLIENT --name N [--expires-days D]`, `list [CLIENT]`,
`rotate PREFIX [--grace-days D]`, `revoke PREFIX`. A key is printed once, when made."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orderhub.apikeys.models import ClientAPIKey
from orderhub.apikeys.services import key_create, key_revoke, key_rotate


class Command(BaseCommand):
    help = "Manage API keys: create CLIENT --name N | list [CLIENT] | rotate PREFIX | revoke PREFIX"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="a new key for CLIENT (the client is made if new); prints it once")
        create.add_argument("client")
        create.add_argument("--name", required=True)
        create.add_argument("--expires-days", type=float)
        listing = sub.add_parser("list", help="every key (of CLIENT): prefix, name, made, last used, expiry")
        listing.add_argument("client", nargs="?")
        rotate = sub.add_parser("rotate", help="a new key for the same client and name; the old one works on "
                                               "until revoked (or --grace-days)")
        rotate.add_argument("prefix")
        rotate.add_argument("--grace-days", type=float)
        revoke = sub.add_parser("revoke", help="revoke a key for good")
        revoke.add_argument("prefix")

    def handle(self, *args, action, **options):
        getattr(self, f"_{action}")(**options)

    def _create(self, client, name, expires_days=None, **options):
        users = get_user_model()
        user = users.objects.filter(username=client).first()
        if user is None:
            user = users(username=client)
            user.set_unusable_password()
            user.full_clean(exclude=["password"])
            user.save()
        key, raw = key_create(client=user, name=name, expires_in_days=expires_days)
        self.stderr.write(f"key {key.prefix}… for {client} ({name}); it is shown this once:")
        self.stdout.write(raw)

    def _list(self, client=None, **options):
        keys = ClientAPIKey.objects.select_related("client").order_by("client__username", "-created")
        if client:
            keys = keys.filter(client__username=client)
        self.stdout.write(f"{'prefix':10} {'client':20} {'name':24} {'made':17} {'last used':17} {'expires':17} state")
        for key in keys:
            when = [f"{t:%Y-%m-%d %H:%M}" if t else "-" for t in (key.created, key.last_used_at, key.expiry_date)]
            state = "revoked" if key.revoked else ("expired" if key.has_expired else "active")
            self.stdout.write(f"{key.prefix:10} {key.client.username[:20]:20} {key.name[:24]:24} "
                              f"{when[0]:17} {when[1]:17} {when[2]:17} {state}")

    def _rotate(self, prefix, grace_days=None, **options):
        try:
            key, raw = key_rotate(prefix=prefix, grace_days=grace_days)
        except ClientAPIKey.DoesNotExist:
            raise CommandError(f"no active key {prefix}") from None
        until = f"until {grace_days} days from now or revoked" if grace_days is not None else "until revoked"
        self.stderr.write(f"new key {key.prefix}… for {key.client.username}; {prefix}… works {until}. "
                          "Shown this once:")
        self.stdout.write(raw)

    def _revoke(self, prefix, **options):
        if not key_revoke(prefix=prefix):
            raise CommandError(f"no active key {prefix}")
        self.stdout.write(f"revoked {prefix}…")
