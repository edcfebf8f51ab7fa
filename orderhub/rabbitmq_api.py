"""RabbitMQ's management HTTP API, for health, metrics and the operators' tools.

ORDERHUB_RABBITMQ_MANAGEMENT_URL may list several nodes' APIs separated by `;` (a cluster, like
ORDERHUB_BROKER_URL): every node answers for the whole cluster, so a request goes to the first one
that answers, and a lost node costs one connection attempt.
"""
from urllib.parse import quote

import requests
from django.conf import settings


def urls() -> list[str]:
    return [url.strip().rstrip("/") for url in settings.RABBITMQ_MANAGEMENT_URL.split(";") if url.strip()]


def vhost() -> str:
    """Our vhost: the one in ORDERHUB_BROKER_URL (the first node's URL, when it lists several)."""
    from kombu import Connection

    return Connection(settings.BROKER_URL).virtual_host or "/"


def vhost_path() -> str:
    return quote(vhost(), safe="")


def request(method: str, path: str, timeout: float = 2, **kwargs) -> requests.Response:
    """`method` `path` (relative to /api/) on the first node that answers; raises the last node's
    error if none does. Any HTTP answer counts as an answer: the caller reads its status."""
    error = None
    for base in urls():
        try:
            return requests.request(method, f"{base}/{path.lstrip('/')}", timeout=timeout, **kwargs)
        except requests.ConnectionError as exc:
            error = exc
    raise error or requests.ConnectionError("ORDERHUB_RABBITMQ_MANAGEMENT_URL names no node")


def get(path: str, timeout: float = 2) -> requests.Response:
    return request("GET", path, timeout=timeout)
