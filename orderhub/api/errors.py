"""One JSON shape for every API error: {"error": code, "detail": ..., "fields": {...}}."""
from django.core.exceptions import PermissionDenied
from django.http import Http404
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
    if response is None:
        return None
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
