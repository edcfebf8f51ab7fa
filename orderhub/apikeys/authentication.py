"""`Authorization: Token <key>` (or `Api-Key <key>`) against the hashed API keys."""
from rest_framework import authentication, exceptions

from orderhub.apikeys.services import key_find, key_used

KEYWORDS = ("Token", "Api-Key")


class ClientKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].decode(errors="replace") not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: expected `Token <key>`.")
        try:
            raw = parts[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid key.") from None
        key = key_find(raw)
        if key is None or not key.client.is_active:
            raise exceptions.AuthenticationFailed("Invalid key.")
        if key.has_expired:
            raise exceptions.AuthenticationFailed("This key has expired.")
        key_used(key)
        return key.client, key

    def authenticate_header(self, request):
        return "Token"
