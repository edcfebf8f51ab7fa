"""No single beat: run two (or more) beat processes, and only the one holding a lease in Redis
sends ticks. The lease lasts LEASE_SECONDS and its holder renews it whenever a tick is due (every
second or so); if it dies, another beat takes the lease once it lapses, so ticks resume within
LEASE_SECONDS plus a second. With Redis unreachable no beat can know who holds it, and each ticks:
a tick twice is harmless here (the relay takes rows with SKIP LOCKED, a deadline sweep or a purge
twice finds nothing left to do), a tick never is not."""
import os
import socket
import time

import structlog
from celery.beat import PersistentScheduler
from django.conf import settings
from redis.exceptions import LockNotOwnedError, RedisError

log = structlog.get_logger(__name__)

LEASE_KEY = "orderhub:beat:leader"
LEASE_SECONDS = 5.0
CHECK_EVERY = 1.0


class LeasedScheduler(PersistentScheduler):
    def __init__(self, *args, **kwargs):
        self._lock = None
        self._leader = False
        self._checked = 0.0
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        super().__init__(*args, **kwargs)

    def _lease(self):
        if self._lock is None:
            import redis

            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT,
                                          socket_connect_timeout=settings.REDIS_TIMEOUT)
            self._lock = client.lock(LEASE_KEY, timeout=LEASE_SECONDS, thread_local=False)
        return self._lock

    def is_leader(self) -> bool:
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY:
            return self._leader
        self._checked = now
        was = self._leader
        try:
            lease = self._lease()
            if self._leader:
                try:
                    lease.reacquire()
                except LockNotOwnedError:
                    self._leader = False
            if not self._leader:
                self._leader = lease.acquire(blocking=False, token=self.holder)
        except RedisError as exc:
            if not self._leader:
                log.warning("beat cannot reach Redis for its lease; ticking anyway", error=repr(exc))
            self._leader = True
        if self._leader != was:
            log.info("beat lease " + ("taken: this beat ticks" if self._leader else "lost: another beat ticks"),
                     holder=self.holder)
        return self._leader

    def close(self):
        """A beat that stops hands the lease over at once rather than after it lapses."""
        if self._leader and self._lock is not None:
            try:
                self._lock.release()
            except (RedisError, LockNotOwnedError):
                pass
            self._leader = False
        super().close()

    def apply_entry(self, entry, producer=None):
        if self.is_leader():
            super().apply_entry(entry, producer=producer)
