"""No single beat (orderhub/beat.py): with two beats running, one ticks; kill it and the other
takes the lease and ticks within 10 s."""
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from orderhub.beat import LEASE_KEY
from tests.conftest import eventually
from tests.integration.conftest import LOG_DIR
from tests.integration.conftest import TestCluster as Processes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]
SENT = b"Scheduler: Sending due task"


def sent(log: Path, since: int) -> int:
    """Ticks a beat has sent since byte `since` of its log."""
    with open(log, "rb") as fh:
        fh.seek(since)
        return fh.read().count(SENT)


def test_two_beats_one_ticks_and_the_other_takes_over_within_10_s(live):
    second = Processes(live.env, Path(LOG_DIR) / "second-beat")  # a schedule file of its own
    key = second.start("beat", index=2)
    logs = {"beat-1": Path(LOG_DIR) / "beat-1.log", key: Path(LOG_DIR) / "second-beat" / f"{key}.log"}
    pids = {"beat-1": live.pids()["beat-1"], key: second.pids()[key]}
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        eventually(lambda: logs[key].exists(), timeout=10, message="the second beat's log")
        holder_pid = int(client.get(LEASE_KEY).decode().rsplit(":", 1)[1])
        active = next(name for name, pid in pids.items() if pid == holder_pid)
        standby = next(name for name in pids if name != active)

        start = {name: os.path.getsize(log) for name, log in logs.items()}
        time.sleep(4)  # a window of ticks (relay and sweep every half second here)
        assert sent(logs[active], start[active]) >= 4
        assert sent(logs[standby], start[standby]) == 0  # one beat ticks at a time

        (live if active == "beat-1" else second).kill(active, signal.SIGKILL)
        killed_at, mark = time.monotonic(), os.path.getsize(logs[standby])
        eventually(lambda: sent(logs[standby], mark) >= 2, timeout=10, interval=0.1,
                   message="the standby beat to tick")
        assert time.monotonic() - killed_at < 10
        assert int(client.get(LEASE_KEY).decode().rsplit(":", 1)[1]) == pids[standby]
    finally:
        second.stop_all()
        if "beat-1" not in live.pids():
            live.start("beat")
