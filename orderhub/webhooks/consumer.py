"""The `webhooks` process: a consumer of `webhooks.events` that turns each order event into
deliveries (services.fan_out), and a sender thread that sends the due ones, a few at a time in
parallel, until each is delivered or dead.

Events come in batches (orderhub/subscriber.py): a batch's deliveries are written in one
transaction, and its events acked once it is committed; one it cannot read goes to the DLQ with its
reason; with the database down they are put back. A message carrying a delivery's id as its
correlation id is an operator's replay of that delivery's dead letter: it revives the delivery."""
import threading
from concurrent.futures import ThreadPoolExecutor

import requests
import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from orderhub import events
from orderhub.subscriber import EventSubscriber
from orderhub.webhooks import services

log = structlog.get_logger(__name__)
POLL_SECONDS = 0.5


class Sender(threading.Thread):
    def __init__(self):
        super().__init__(name="webhook-sender", daemon=True)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=settings.WEBHOOK_CONCURRENCY, thread_name_prefix="webhook")
        self._local = threading.local()

    def _session(self):
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def run(self):
        while not self.stopping.is_set():
            try:
                close_old_connections()
                busy = self.once()
            except (OperationalError, InterfaceError) as exc:
                log.warning("webhooks database unavailable", error=repr(exc))
                connection.close()
                busy = False
            except Exception:
                log.exception("webhook sender error")
                busy = False
            if not busy:
                self.wake.wait(POLL_SECONDS)
                self.wake.clear()

    def once(self) -> bool:
        """Send what is due (a batch); True when there may be more."""
        due = services.claim_due(settings.WEBHOOK_CONCURRENCY * 4)
        outcomes = list(self.pool.map(lambda row: services.send(row, self._session()), due))
        for row, outcome in zip(due, outcomes, strict=True):
            services.record(row, outcome)
        try:
            services.dead_letter_pending()
        except Exception as exc:  # the broker: the rows stay marked for the next round
            log.warning("could not dead-letter dead webhook deliveries yet", error=repr(exc))
        return bool(due)


class Fanout(EventSubscriber):
    queue = services.QUEUE

    def __init__(self, connection, sender: Sender):
        super().__init__(connection)
        self.sender = sender
        self._woken = False

    def read(self, message):
        replayed = (message.properties or {}).get("correlation_id")
        if replayed:
            return ("replay", replayed)
        return ("event", events.decode(message.body, types=services.TYPES, reader="the webhooks"))

    def apply(self, items):
        created = services.fan_out_many([event for kind, event in items if kind == "event"])
        log.debug("webhook deliveries written", events=len(items), deliveries=created)
        for kind, replayed in items:
            if kind == "replay":
                revived = services.delivery_revive(replayed)
                log.info("dead webhook delivery replayed" if revived else "replay of no dead delivery ignored",
                         delivery_id=str(replayed))
                created += revived
        self._woken = bool(created)

    def received(self, items):
        if self._woken:  # the sender polls for retries anyway; it is woken for new work
            self.sender.wake.set()


def run(connection):
    sender = Sender()
    sender.start()
    try:
        Fanout(connection, sender).run()
    finally:
        sender.stopping.set()
        sender.wake.set()
