"""API keys (orderhub/apikeys): hashed at rest and shown once, several per client with a name,
last use and expiry; rotated with no downtime (the old key works until revoked, then 401)."""
import io

import pytest
from django.core.management import call_command
from django.db import connections
from rest_framework.test import APIClient

from orderhub.apikeys.models import ClientAPIKey
from orderhub.apikeys.services import key_create, key_find

pytestmark = pytest.mark.django_db(databases="__all__")


def status(raw, keyword="Token"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {raw}")
    return client.get("/api/products/").status_code


def command(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("api_keys", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_a_key_rotates_with_no_downtime_and_the_old_one_is_refused_once_revoked():
    old, _ = command("create", "shop", "--name", "backend")
    assert status(old) == 200 and status(old, "Api-Key") == 200
    prefix = old.partition(".")[0]

    new, said = command("rotate", prefix)
    assert "shown this once" in said.lower() and new != old
    assert status(old) == 200 and status(new) == 200  # both, while clients switch over

    assert command("revoke", prefix)[0] == f"revoked {prefix}…"
    assert status(old) == 401 and status(new) == 200
    listing, _ = command("list", "shop")
    assert "revoked" in listing and "active" in listing and old not in listing and new not in listing


def test_an_expired_key_a_wrong_key_and_a_mangled_header_are_401():
    key, raw = key_create(client=ClientAPIKey._meta.get_field("client").related_model.objects.create(
        username="expiring"), name="short", expires_in_days=-1)
    assert status(raw) == 401
    assert status(raw[:-1] + ("x" if raw[-1] != "x" else "y")) == 401
    assert status("no-dot-and-no-such-key") == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token two parts")
    assert client.get("/api/products/").status_code == 401


def test_no_key_is_stored_in_clear_and_its_use_is_recorded(django_user_model):
    client = django_user_model.objects.create(username="several")
    raws = [key_create(client=client, name=f"key {n}")[1] for n in range(3)]
    assert status(raws[1]) == 200
    assert ClientAPIKey.objects.get(prefix=raws[1][:8]).last_used_at is not None
    assert ClientAPIKey.objects.get(prefix=raws[0][:8]).last_used_at is None
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT id, prefix, hashed_key, name FROM api_key")
        stored = " ".join(" ".join(map(str, row)) for row in cursor.fetchall())
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
    for raw in raws:
        assert raw not in stored and raw.partition(".")[2] not in stored


def test_a_token_from_before_keys_were_hashed_still_works_hashed(django_user_model):
    """The migration hashes DRF's tokens into keys that accept the same string (no client breaks)."""
    from rest_framework_api_key.crypto import KeyGenerator

    legacy = "0123456789abcdef0123456789abcdef01234567"
    hashed = KeyGenerator().hash(legacy)
    ClientAPIKey.objects.create(id=f"{legacy[:8]}.{hashed}", prefix=legacy[:8], hashed_key=hashed, name="token",
                                client=django_user_model.objects.create(username="old-client"))
    assert key_find(legacy).client.username == "old-client"
    assert status(legacy) == 200
