"""The API's own request metrics: requests by method, route and status, and their duration.

Labels are bounded: the route is the URL pattern Django matched (`api/orders/<pk>/`), never
the path, `unmatched` when none did; the method is one of HTTP's, else `other`. gunicorn runs
several worker processes: `gunicorn.conf.py` sets prometheus_client's multiprocess directory, and
`GET /metrics` adds up every worker's (orderhub/metrics.py)."""
import re
import time

from prometheus_client import Counter, Histogram

REQUESTS = Counter("orderhub_api_requests", "API requests by method, route and status", ["method", "route", "status"])
SECONDS = Histogram("orderhub_api_request_seconds", "API request duration by method and route", ["method", "route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _readable(route: str) -> str:
    """DRF's router makes regular expressions: `api/orders/(?P<pk>[^/.]+)/$` -> `api/orders/<pk>/`."""
    return GROUP.sub(r"<\1>", route).replace("^", "").replace("$", "")


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)  # an exception in a view is already a 500 here
        match = getattr(request, "resolver_match", None)
        route = _readable(match.route or match.view_name or "unnamed") if match else "unmatched"
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(method, route, str(response.status_code)).inc()
        SECONDS.labels(method, route).observe(time.perf_counter() - started)
        return response
