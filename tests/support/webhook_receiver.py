"""A webhook receiver on loopback for the tests and the chaos suite: it verifies each request with
the documentation's own receiver code (docs/api.md, Webhooks: so the documentation is right), keeps what it accepted, and can be taken
down (the port closed, connections refused) and brought back on the same port."""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_receiver_code() -> dict:
    """The documentation's receiver block (docs/api.md), run as it is written there."""
    page = (ROOT / "docs" / "api.md").read_text()
    block = re.search(r"<!-- webhook-receiver:[^>]*-->\n```python\n(.*?)```", page, re.S)
    if not block:
        raise AssertionError("docs/api.md's webhook receiver block is missing")
    namespace = {}
    exec(compile(block.group(1), "docs/api.md (webhook receiver)", "exec"), namespace)  # noqa: S102
    return namespace


class Receiver:
    """`status` is what it answers a verified request; `secret` must be set before one arrives."""

    def __init__(self, secret=None):
        self.verify = readme_receiver_code()["verified_event_id"]
        self.secret, self.status = secret, 204
        self.received, self.refused = [], []
        self.lock = threading.Lock()
        self.port, self.server = 0, None
        self.up()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/orderhub/hook"

    def up(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    event_id = receiver.verify(receiver.secret, self.headers, body)
                except (ValueError, KeyError, StopIteration, TypeError) as exc:
                    with receiver.lock:
                        receiver.refused.append(f"{type(exc).__name__}: {exc}")
                    self.send_response(400)
                else:
                    with receiver.lock:
                        if receiver.status < 300:
                            receiver.received.append((event_id, dict(self.headers), body))
                    self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[tuple[str, dict]]:
        """(event id, event) of every accepted request, in arrival order."""
        with self.lock:
            return [(event_id, json.loads(body)) for event_id, _, body in self.received]
