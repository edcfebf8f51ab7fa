"""Create an API client and print only its token."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token


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
        self.stdout.write(Token.objects.create(user=user).key)
