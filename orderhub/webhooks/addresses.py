"""Where a webhook may point. Checked when a URL is registered and again before each delivery
(a name can change what it resolves to). Locally anything http(s) goes, a receiver on loopback
included; in production (ORDERHUB_ENV=production) only https, never a loopback address, and never
a private, link-local or reserved one unless ORDERHUB_WEBHOOK_ALLOW_PRIVATE_URLS is set (a receiver
inside your own network)."""
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class RefusedURL(ValueError):
    pass


def _addresses(host, port):
    try:
        return {ipaddress.ip_address(info[4][0].split("%", 1)[0])
                for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise RefusedURL(f"{host} does not resolve: {exc}") from None


def check(url: str, *, resolve=True) -> str:
    """The URL, or RefusedURL saying why it may not be used."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedURL(f"not a URL: {exc}") from None
    schemes = ("https",) if settings.PRODUCTION else ("https", "http")
    if parts.scheme not in schemes:
        raise RefusedURL(f"the scheme must be {' or '.join(schemes)}")
    if not parts.hostname:
        raise RefusedURL("the URL has no host")
    if parts.username or parts.password:
        raise RefusedURL("credentials in the URL are refused: authenticate the signature instead")
    if not settings.PRODUCTION:
        return url
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        raise RefusedURL("loopback URLs are refused in production")
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        if not resolve:
            return url
        addresses = _addresses(host, port or 443)
    for address in addresses:
        if address.is_loopback or address.is_unspecified:
            raise RefusedURL("loopback URLs are refused in production")
        if not settings.WEBHOOK_ALLOW_PRIVATE_URLS and (
                address.is_private or address.is_link_local or address.is_reserved or address.is_multicast):
            raise RefusedURL(f"{host} is a private address ({address}): refused unless "
                             "ORDERHUB_WEBHOOK_ALLOW_PRIVATE_URLS is set")
    return url
