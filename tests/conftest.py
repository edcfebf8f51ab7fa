"""Shared test helpers."""
import time

import pytest


def eventually(condition, *, timeout=10.0, interval=0.05, message="condition"):
    """Wait until `condition()` returns a truthy value and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message} (last value: {last!r})")


@pytest.fixture(scope="session", autouse=True)
def close_connections_before_test_databases_are_dropped(django_db_setup):
    """The `provider` alias mirrors `payments` in tests; an open connection on it would stop
    pytest-django from dropping test_payments at the end of the session."""
    yield
    from django.db import connections

    connections.close_all()


@pytest.fixture(scope="session", autouse=True)
def no_throttle_history_from_an_earlier_session():
    """DRF's throttle keys its history by user pk, and pks start again at 1 in each session's new
    test databases, while Redis keeps the keys: a run started within a minute of the last one would
    find its users' requests already counted."""
    from django.core.cache import cache

    client = cache._cache.get_client()
    for key in client.scan_iter(match="*throttle_*"):
        client.delete(key)
