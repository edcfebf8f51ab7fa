"""Every DRF token (stored in clear) becomes a hashed API key that accepts the same string, so no
client breaks; then the clear tokens are deleted."""
from django.db import migrations


def hash_tokens(apps, schema_editor):
    from rest_framework_api_key.crypto import KeyGenerator

    Token = apps.get_model("authtoken", "Token")
    ClientAPIKey = apps.get_model("apikeys", "ClientAPIKey")
    generator = KeyGenerator()
    for token in Token.objects.all():
        prefix, hashed = token.key[:8], generator.hash(token.key)
        ClientAPIKey.objects.create(id=f"{prefix}.{hashed}", prefix=prefix, hashed_key=hashed, name="token",
                                    client_id=token.user_id)
    Token.objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("apikeys", "0001_initial"), ("authtoken", "0004_alter_tokenproxy_options")]

    operations = [migrations.RunPython(hash_tokens, migrations.RunPython.noop)]
