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
