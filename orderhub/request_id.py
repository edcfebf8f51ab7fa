"""Every request gets an id: the client's `X-Request-ID` when it is a sane one (1-64 letters,
digits and `._:-`), else a new one. It is returned in the response's `X-Request-ID`, bound to
every log line the request writes (gunicorn's access line included), and an order placed by the
request carries it into its saga (the saga's context, so every command's payload): the workers
log it with each command, so one grep follows an order from the request to its last step."""
import re
import uuid

from structlog.contextvars import bind_contextvars, unbind_contextvars

HEADER = "X-Request-ID"
SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get(HEADER, "")
        request.id = given if SANE.match(given) else uuid.uuid4().hex
        bind_contextvars(request_id=request.id)
        try:
            response = self.get_response(request)
        finally:
            unbind_contextvars("request_id")
        response[HEADER] = request.id
        return response
