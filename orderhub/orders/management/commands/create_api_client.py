"""Create an API client and print only its first API key (more: `manage.py api_keys`)."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orderhub.apikeys.services import key_create


class Command(BaseCommand):
    help = "Create an API client NAME and print its token (nothing else)."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        user_model = get_user_model()
        if user_model.objects.filter(username=name).exists():
            raise CommandError(f"a client named {name!r} already exists")
        user = user_model(username=name)
        user.set_unusable_password()
        user.full_clean(exclude=["password"])
        user.save()
        self.stdout.write(key_create(client=user, name="first key")[1])
