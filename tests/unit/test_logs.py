"""The log formatter (orderhub/logs.py): fields as key=value or JSON, and a traceback as text."""
import json
import logging

import pytest

from orderhub.logs import formatter


def record_of_a_bug():
    try:
        {}["missing"]
    except KeyError:
        return logging.LogRecord("workers.messaging", logging.ERROR, __file__, 1, "handler failed saga_id=%s",
                                 ("s-1",), exc_info=__import__("sys").exc_info())


def test_a_traceback_follows_its_line_as_text():
    text = formatter("keyvalue").format(record_of_a_bug())
    first, *rest = text.splitlines()
    assert first.startswith("timestamp=") and "level='error'" in first and "handler failed saga_id=s-1" in first
    assert "exc_info" not in first and "<traceback object" not in text
    assert rest[0] == "Traceback (most recent call last):"
    assert any('{}["missing"]' in line for line in rest)
    assert rest[-1] == "KeyError: 'missing'"


def test_a_traceback_in_json_is_structured_frames():
    event = json.loads(formatter("json").format(record_of_a_bug()))
    [exception] = event["exception"]
    assert exception["exc_type"] == "KeyError" and exception["frames"][-1]["name"] == "record_of_a_bug"


@pytest.mark.parametrize("renderer", ["keyvalue", "json"])
def test_a_line_without_an_exception_is_one_line(renderer):
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "fine", (), None)
    assert "\n" not in formatter(renderer).format(record)


def test_gunicorns_access_log_is_fields():
    atoms = {"h": "127.0.0.1", "m": "POST", "U": "/api/orders/", "q": "", "s": "202", "M": 41, "B": 512,
             "r": "POST /api/orders/ HTTP/1.1"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, '%(h)s "%(r)s" %(s)s', (atoms,), None)
    line = formatter("keyvalue").format(record)
    assert "event='request'" in line and "method='POST'" in line and "path='/api/orders/'" in line
    assert "status='202'" in line and "duration_ms=41" in line and "query" not in line
    assert json.loads(formatter("json").format(record))["status"] == "202"
