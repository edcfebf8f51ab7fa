"""An API process of its own (gunicorn, as `make run` starts it) for integration tests, and a
client of it that times every call."""
import socket
import time
import uuid

import requests
from django.contrib.auth import get_user_model

from orderhub.apikeys.services import key_create
from tests.conftest import eventually
from tests.integration.helpers import ADDRESS
from tests.support.cluster import Cluster


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Api:
    """An API process of its own (gunicorn, as `make run` starts it), and a client of it."""

    def __init__(self, live, log_dir, **env):
        self.base = f"http://127.0.0.1:{free_port()}"
        self.processes = Cluster(live.env | {"ORDERHUB_API_BIND": self.base[7:]} | env, log_dir)
        self.processes.start("api")
        self.session = self.client_session()
        eventually(self._answering, timeout=30, interval=0.2, message="the API process to answer")

    @staticmethod
    def client_session():
        """A session as a new API client (a user of its own, with its own token and throttle)."""
        user = get_user_model().objects.create(username=f"client-{uuid.uuid4().hex[:8]}")
        session = requests.Session()
        session.headers["Authorization"] = f"Token {key_create(client=user, name='test')[1]}"
        return session

    def _answering(self):
        try:
            return self.session.get(self.base + "/api/products/", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still loading the app
            return False

    def timed(self, method, path, *, session=None, **kwargs):
        started = time.monotonic()
        response = (session or self.session).request(method, self.base + path, timeout=10, **kwargs)
        return response, time.monotonic() - started

    def place(self, sku, *, session=None):
        body = {"items": [{"sku": sku, "quantity": 1}], "payment_token": "tok_ok", "shipping_address": ADDRESS}
        return self.timed("POST", "/api/orders/", session=session, json=body)

    def stop(self):
        self.processes.stop_all()
