"""Workers health-check a kept database connection before a task only when the last task did not
just leave it clean (orderhub/celery.py): the check is a round trip, and under load it came
before every message."""
import time

import pytest
from django.db import DatabaseError, connections

connection = connections["default"]

from orderhub import celery as worker_signals

pytestmark = pytest.mark.django_db(transaction=True)


def task_ran(sql="SELECT 1"):
    worker_signals.drop_stale_database_connections()
    with connection.cursor() as cursor:
        cursor.execute(sql)
    worker_signals.note_connections_left_clean()


def test_a_connection_left_clean_a_moment_ago_is_not_checked_again(monkeypatch):
    task_ran()
    checks = []
    monkeypatch.setattr(type(connection), "is_usable", lambda self: checks.append(1) or True)
    task_ran()
    assert checks == []


def test_a_connection_idle_past_the_grace_is_checked(monkeypatch):
    task_ran()
    monkeypatch.setattr(worker_signals, "HEALTH_CHECK_GRACE_SECONDS", 0.05)
    time.sleep(0.1)
    checks = []
    monkeypatch.setattr(type(connection), "is_usable", lambda self: checks.append(1) or True)
    task_ran()
    assert checks == [1]


def test_a_connection_a_task_left_with_an_error_is_checked_before_the_next(monkeypatch):
    task_ran()
    worker_signals.drop_stale_database_connections()
    with pytest.raises(DatabaseError), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_here")
    worker_signals.note_connections_left_clean()
    checks = []
    monkeypatch.setattr(type(connection), "is_usable", lambda self: checks.append(1) or True)
    task_ran()
    assert checks  # Django asked whether the connection still works before the next task used it
