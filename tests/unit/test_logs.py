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


@pytest.mark.parametrize("renderer", ["keyvalue", "json"])
def test_our_own_lines_carry_their_values_as_fields_not_in_the_event(renderer):
    """Our modules log with structlog (`log.info("order placed", order_id=...)`): the event is a
    fixed text to group by, each value a field of its own, through the same formatter."""
    import io

    import structlog
    from structlog.contextvars import bind_contextvars, unbind_contextvars

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(renderer))
    logger = logging.getLogger("orderhub.test_fields")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    bind_contextvars(request_id="r-1")
    try:
        structlog.get_logger("orderhub.test_fields").warning("order refused at the door", in_flight=301, limit=300)
        structlog.get_logger("orderhub.test_fields").debug("not at this level", x=1)
    finally:
        unbind_contextvars("request_id")
        logger.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    if renderer == "json":
        event = json.loads(line)
        assert (event["event"], event["in_flight"], event["limit"], event["request_id"], event["level"],
                event["logger"]) == ("order refused at the door", 301, 300, "r-1", "warning", "orderhub.test_fields")
    else:
        assert line.startswith("timestamp=") and ("level='warning' logger='orderhub.test_fields' "
                                                  "event='order refused at the door' request_id='r-1'") in line
        assert "in_flight=301 limit=300" in line


def test_no_module_of_ours_formats_values_into_its_log_events():
    """Fields are fields: no `log.<level>("... %s", value)` left in the product's code."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = [f"{path.relative_to(root)}:{number}" for top in ("orderhub", "sagas", "workers")
                 for path in (root / top).rglob("*.py") if "migrations" not in path.parts
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"\blog\.(debug|info|warning|error|exception|critical)\(\s*f?\"[^\"]*%", line)]
    assert not offenders, offenders
