"""Making, finding, rotating and revoking API keys (orderhub/apikeys/models.py)."""
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from orderhub.apikeys.models import ClientAPIKey

LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key




def key_create(*, client, name: str, expires_in_days: float | None = None) -> tuple[ClientAPIKey, str]:
    """A new key for `client`; returns the row and the key, which is not stored and cannot be shown again."""
    expiry = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    return ClientAPIKey.objects.create_key(client=client, name=name[:50], expiry_date=expiry)


def key_find(raw: str) -> ClientAPIKey | None:
    """The usable (not revoked) key `raw` is, or None. A key made before keys were hashed (40 hex
    characters, no dot) is found by its first eight."""
    prefix = raw.partition(".")[0] if "." in raw else raw[:8]
    if not prefix or len(prefix) > 8:
        return None
    candidate = ClientAPIKey.objects.get_usable_keys().select_related("client").filter(prefix=prefix).first()
    return candidate if candidate is not None and candidate.is_valid(raw) else None


def key_used(key: ClientAPIKey):
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_EVERY:
        ClientAPIKey.objects.filter(pk=key.pk).update(last_used_at=now)


def key_rotate(*, prefix: str, grace_days: float | None = None) -> tuple[ClientAPIKey, str]:
    """A new key for the same client and name. The old one keeps working (until `grace_days`, when
    given, or until it is revoked), so clients switch over with no downtime."""
    with transaction.atomic():
        old = ClientAPIKey.objects.select_for_update().get(prefix=prefix, revoked=False)
        new, raw = key_create(client=old.client, name=old.name)
        if grace_days is not None:
            grace = timezone.now() + timedelta(days=grace_days)
            if old.expiry_date is None or old.expiry_date > grace:
                old.expiry_date = grace
                old.save(update_fields=["expiry_date"])
    return new, raw


def key_revoke(*, prefix: str) -> bool:
    """Revoke a key for good; False when it was revoked already (or never existed)."""
    return ClientAPIKey.objects.filter(prefix=prefix, revoked=False).update(revoked=True) == 1
