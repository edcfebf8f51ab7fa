"""Who holds a command: a lease in Redis per message id, kept by the worker handling it.

The deadline sweep reads it to tell a participant's silence from our own backlog:
- `busy`: a worker is handling the command now (its lease is refreshed every LEASE/3 seconds
  while it works, and lapses within LEASE seconds if the worker dies), since when it took it
  (`busy@<unix time>`). Busy for longer than the step's own deadline, the participant has the
  command and has not answered: the deadline stands (a hung provider is caught). Busy for less,
  it has just taken it (off a backlog, or back from a retry), and has the step's deadline to
  answer, like any participant: the deadline is put off;
- `retrying`: the worker met a failure it retries and RabbitMQ holds the command until the next
  attempt (the lease lasts the delay and RETRY_MARGIN_SECONDS). The participant is working through a retry
  budget it was given and will answer, `unknown` at worst: the deadline is put off;
- `answered`: the worker has answered (the reply is published, on its way through our own queue,
  behind the sweep's marker): the deadline is put off. The lease lasts ANSWERED_SECONDS; until
  then a `busy` left behind by the worker (it lapses only LEASE seconds later) would have said
  "silent" of a participant that had answered;
- `queued`: a worker has taken the command in a batch (workers/batches.py) and will start it once
  the commands ahead of it in the batch are done: the command waits its turn, as it would in the
  participant's queue, so the deadline is put off (the lease lapses within LEASE seconds if the
  worker dies);
- no lease: nobody holds the command. If the participant's queue holds messages, the command is
  waiting among them (or was handed back by a worker that died): the deadline is put off. So it
  is while one of the participant's batch consumers is handling a batch (`in_hand`): the broker
  delivers to it meanwhile, and what it delivered waits unread in that consumer's connection.

A lease is a hint: when Redis cannot be asked, the deadline stands, as it did before leases.
"""
import threading
import time

import structlog
from django.core.cache import cache

log = structlog.get_logger(__name__)

LEASE_SECONDS = 6.0
# How much longer than its delay a retried command may take to come back: RabbitMQ's delayed
# delivery (dead-lettering between quorum queues) was measured up to 29 s late under chaos, so
# twice that. The command is durable in RabbitMQ meanwhile; a margin too short makes a participant
# working through its retries look silent.
RETRY_MARGIN_SECONDS = 60.0
# How long an answered command is known as answered (its reply is applied long before, or lost).
ANSWERED_SECONDS = 60.0
BUSY, RETRYING, ANSWERED, QUEUED = "busy", "retrying", "answered", "queued"
UNKNOWN = object()

_held: dict[str, str] = {}  # message id -> its busy lease
_lock = threading.Lock()
_refresher: threading.Thread | None = None


def _key(message_id) -> str:
    return f"lease:{message_id}"


def _set(message_id, value, seconds):
    try:
        cache.set(_key(message_id), value, seconds)
    except Exception as exc:
        log.warning("could not keep the lease", message_id=str(message_id), error=repr(exc))


def _set_many(values: dict, seconds):
    """Several leases in one round trip (the cache's pipeline)."""
    if not values:
        return
    try:
        cache.set_many({_key(message_id): value for message_id, value in values.items()}, seconds)
    except Exception as exc:
        log.warning("could not keep the leases", messages=len(values), error=repr(exc))


class holding_many:
    """`holding` for a batch of commands (workers/batches.py): their leases in one round trip
    (`state=QUEUED`: taken, waiting their turn behind the rest of the batch)."""

    def __init__(self, message_ids, state=BUSY, *, in_hand: str | None = None):
        self.message_ids = [str(message_id) for message_id in message_ids]
        if in_hand:
            self.message_ids.append(_in_hand_id(in_hand))
        self.state = state

    def __enter__(self):
        _start_refresher()
        self.lease = f"{self.state}@{time.time():.3f}"
        with _lock:
            for message_id in self.message_ids:
                _held[message_id] = self.lease
        _set_many(dict.fromkeys(self.message_ids, self.lease), LEASE_SECONDS)
        return self

    def __exit__(self, *exc):
        # What the leases say now (`mark`) is written as they are let go: left to the refresher, a
        # handler's busy could outlive its batch, and a command done and waiting for its reply to
        # be confirmed would look busy for as long as the lease lasts.
        with _lock:
            final = {message_id: _held.pop(message_id) for message_id in self.message_ids if message_id in _held}
        _set_many({message_id: lease for message_id, lease in final.items() if lease != self.lease}, LEASE_SECONDS)
        return False


def _in_hand_id(queue):
    return f"in-hand:{queue}"


def in_hand(queue) -> bool:
    """Whether a consumer of `queue` is handling a batch, or was within LEASE_SECONDS: commands
    the broker delivered to it meanwhile wait unread in its connection, neither in the queue nor
    leased, and their deadlines are put off as if they were still in the queue."""
    return _read(_in_hand_id(queue)) not in (None, UNKNOWN)


def answered_many(message_ids):
    """`answered` for a batch's replies, in one round trip."""
    ids = [str(message_id) for message_id in message_ids]
    with _lock:
        for message_id in ids:
            _held.pop(message_id, None)
        _set_many(dict.fromkeys(ids, ANSWERED), ANSWERED_SECONDS)


class holding:
    """While a worker handles a command: `with delivery.holding(message_id): ...`."""

    def __init__(self, message_id):
        self.message_id = str(message_id)

    def __enter__(self):
        _start_refresher()
        lease = f"{BUSY}@{time.time():.3f}"
        with _lock:
            _held[self.message_id] = lease
        _set(self.message_id, lease, LEASE_SECONDS)
        return self

    def __exit__(self, *exc):
        release(self.message_id)  # the lease lapses by itself within LEASE_SECONDS
        return False


def mark(message_id, state):
    """Change the lease of a command held (`holding_many`) to `state` since now, in memory: the
    refresher writes it within LEASE_SECONDS/3. A batch's handler marks its command busy when it
    starts and queued when it is done and waits for the batch's commit (workers/messaging.py), so a
    slow call in the batch leaves the others waiting their turn, not silent; and a batch that ends
    quickly costs no write for it."""
    with _lock:
        if str(message_id) in _held:
            _held[str(message_id)] = f"{state}@{time.time():.3f}"


def release(message_id):
    with _lock:
        _held.pop(str(message_id), None)


def retrying(message_id, delay):
    """The command goes back to RabbitMQ for `delay` seconds before its next attempt."""
    _settle(message_id, RETRYING, delay + RETRY_MARGIN_SECONDS)


def answered(message_id):
    """The worker has published its reply to the command."""
    _settle(message_id, ANSWERED, ANSWERED_SECONDS)


def _settle(message_id, value, seconds):
    # Under the lock the refresher takes: it cannot put `busy` back over this once it is written.
    with _lock:
        _held.pop(str(message_id), None)
        _set(message_id, value, seconds)


def state(message_id):
    """BUSY, RETRYING, ANSWERED, None (nobody holds it) or UNKNOWN (Redis could not be asked)."""
    lease = _read(message_id)
    if isinstance(lease, str):
        for held in (BUSY, QUEUED):
            if lease.startswith(held):
                return held
    return lease


def busy_for(message_id) -> float | None:
    """How long the worker handling the command has been at it (None: nobody is handling it, or
    Redis could not be asked)."""
    lease = _read(message_id)
    if not isinstance(lease, str) or not lease.startswith(f"{BUSY}@"):
        return None
    try:
        return max(0.0, time.time() - float(lease.split("@", 1)[1]))
    except ValueError:
        return None


def _read(message_id):
    try:
        return cache.get(_key(message_id))
    except Exception as exc:
        log.warning("could not read the lease", message_id=str(message_id), error=repr(exc))
        return UNKNOWN


def _start_refresher():
    global _refresher
    if _refresher is not None and _refresher.is_alive():
        return
    with _lock:
        if _refresher is None or not _refresher.is_alive():
            _refresher = threading.Thread(target=_refresh, name="lease-refresher", daemon=True)
            _refresher.start()


def _refresh():
    while True:
        time.sleep(LEASE_SECONDS / 3)
        with _lock:  # under the lock: a lease settled meanwhile is not put back to busy
            by_lease = {}
            for message_id, lease in _held.items():
                by_lease.setdefault(lease, []).append(message_id)
            for lease, message_ids in by_lease.items():
                _set_many(dict.fromkeys(message_ids, lease), LEASE_SECONDS)
