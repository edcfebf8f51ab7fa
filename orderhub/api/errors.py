"""One JSON shape for every API error: {"error": code, "detail": ..., "fields": {...}}.

Everything under /api/ answers in it: DRF's own errors, a path no view matches (404), and a bug
(500, `server_error`, with an `error_id` that is also on the log line with the traceback; never
the traceback itself). Elsewhere (the admin) Django's pages stand."""
import uuid

import structlog
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with the current state."


class Unprocessable(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "unprocessable"
    default_detail = "The request cannot be processed."


class Overloaded(exceptions.APIException):
    """Refused at the door: the system has as much work in flight as it is allowed (Retry-After)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "overloaded"
    default_detail = "Too many orders are in progress; try again shortly."

    def __init__(self, detail=None, *, wait):
        super().__init__(detail)
        self.wait = wait  # DRF's handler turns this into the Retry-After header


def exception_handler(exc, context):
    # Django's own exceptions become DRF's, so they carry DRF's codes ("not_found", ...).
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:  # not an API exception: a bug in a view
        return server_error_response(exc)
    if isinstance(exc, exceptions.ValidationError):
        fields = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"error": "invalid", "detail": "The request has invalid fields.", "fields": fields}
        return response
    detail = getattr(exc, "detail", str(exc))
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if not isinstance(code, str):
        code = "error"
    response.data = {"error": code, "detail": str(detail), "fields": {}}
    return response


def error_response(code, detail, http_status):
    return Response({"error": code, "detail": detail, "fields": {}}, status=http_status)


log = structlog.get_logger(__name__)
SERVER_ERROR = "An unexpected error occurred; quote the error_id when reporting it."


def _server_error_body():
    error_id = uuid.uuid4().hex
    log.error("server error", error_id=error_id, exc_info=True)
    return {"error": "server_error", "detail": SERVER_ERROR, "fields": {}, "error_id": error_id}


def server_error_response(exc):
    return Response(_server_error_body(), status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def _is_api(request):
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    """handler404: a path under /api/ that no view matches."""
    if _is_api(request):
        return JsonResponse({"error": "not_found", "detail": "No such resource.", "fields": {}}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: a failure outside any API view (a middleware), under /api/ in the error shape."""
    if _is_api(request):
        return JsonResponse(_server_error_body(), status=500)
    return defaults.server_error(request)
