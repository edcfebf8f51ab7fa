"""The beat lease (orderhub/beat.py) against the real Redis: one scheduler holds it, another waits;
a stopping holder hands it over; with Redis unreachable a beat ticks anyway."""
import contextlib
import uuid

import pytest

from orderhub import beat
from orderhub.celery import app


@pytest.fixture
def schedulers(monkeypatch, tmp_path, settings):
    monkeypatch.setattr(beat, "LEASE_KEY", f"test:beat:{uuid.uuid4().hex}")
    monkeypatch.setattr(beat, "CHECK_EVERY", 0.0)
    made = []

    def make():
        made.append(beat.LeasedScheduler(app=app, schedule_filename=str(tmp_path / f"schedule-{len(made)}"),
                                         lazy=True))
        return made[-1]

    yield make
    for scheduler in made:
        with contextlib.suppress(Exception):  # one whose Redis is unreachable holds nothing to release
            scheduler._lock.release()


def test_one_holds_the_lease_and_hands_it_over_when_it_stops(schedulers):
    first, second = schedulers(), schedulers()
    assert first.is_leader() and not second.is_leader()
    assert first.is_leader() and not second.is_leader()  # renewed, still held
    first.close()
    assert second.is_leader()


def test_with_redis_unreachable_a_beat_ticks_anyway(schedulers, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert schedulers().is_leader()
