"""The OpenAPI schema's completeness (drf-spectacular): every operation declares the errors it can
answer, in the one error shape (the `Error` component), and the headers every answer carries.

Which errors, by what the operation is:
- every one: 401 (no or a bad token), 406 (an Accept it cannot meet), 429 (throttled, with
  Retry-After), 500 (a bug: `server_error` with an `error_id`);
- one with a body: 400 (invalid fields, or not JSON), 415 (not JSON at all);
- one on a resource (`{id}` in its path): 404 (no such order, or another client's);
- a list: 400 (an unknown filter value) and 404 (a page past the end).
The operations' own answers (202, 304, 409, 422, 503) are declared on their views."""
from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A machine code: invalid, parse_error, not_found, throttled, "
                                            "not_cancellable, idempotency_key_reused, overloaded, server_error, ...")
    detail = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(child=serializers.JSONField(),
                                   help_text="For `invalid`: each field's messages, a list of strings; a nested "
                                             "field's are nested the same way (an object, or a list per item).")
    error_id = serializers.CharField(required=False, help_text="For `server_error`: quote it; the API's log "
                                                               "holds the traceback under it.")

    class Meta:
        ref_name = "Error"


ERRORS = {
    "400": "Bad request: invalid fields (`invalid`, with `fields`) or a body that is not JSON (`parse_error`).",
    "401": "No token, or a token that is not valid.",
    "404": "Not found.",
    "406": "The Accept header asks for something other than JSON.",
    "415": "The body is not application/json.",
    "429": "Throttled: too many requests; try again after Retry-After seconds.",
    "500": "A bug (`server_error`): the answer's error_id is on the log line with the traceback.",
}
REQUEST_ID = OpenApiParameter(
    "X-Request-ID", str, OpenApiParameter.HEADER, response=True, required=True,
    description="This request's id: the client's own X-Request-ID when it sent a sane one (1 to 64 letters, "
                "digits or ._:-), else a new one. On every log line of the request, and of its order's saga.")
RETRY_AFTER = OpenApiParameter("Retry-After", int, OpenApiParameter.HEADER, response=["429", "503"],
                               required=False, description="Seconds to wait before trying again.")


class AutoSchema(openapi.AutoSchema):
    def _error_codes(self):
        codes = ["401", "406", "429", "500"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["400", "415"]
        if "{" in self.path:
            codes.append("404")
        if self._is_list_view():
            codes += ["400", "404"]
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if not self.path.startswith("/api/"):
            return responses
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(OpenApiResponse(ErrorSerializer, ERRORS[code]), code,
                                                              direction=direction)
        return responses

    def get_override_parameters(self):
        return [*super().get_override_parameters(), REQUEST_ID, RETRY_AFTER]
