"""/api/webhooks/: a client's webhook endpoints. The signing secret is in the answer to a create
and to a rotate-secret, never again."""
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from orderhub.api.errors import Unprocessable
from orderhub.api.schema import ErrorSerializer
from orderhub.webhooks import addresses, services
from orderhub.webhooks.models import WebhookEndpoint


class WebhookEndpointSerializer(serializers.ModelSerializer):
    url = serializers.URLField(max_length=2000, help_text="Where each of your orders' final states is POSTed. "
                                                          "https in production; loopback addresses are refused there.")
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "active", "created_at"]
        read_only_fields = ["id", "active", "created_at"]

    def validate_url(self, value):
        try:
            return addresses.check(value)
        except addresses.RefusedURL as exc:
            raise serializers.ValidationError(str(exc)) from None


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="Signs every delivery (HMAC-SHA256; docs/api.md, Webhooks). "
                                                             "Shown this once: keep it.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                             viewsets.GenericViewSet):
    """Each of your orders' final states (order.completed, order.failed, order.cancelled,
    order.needs_attention, order.resolved) is POSTed to every endpoint you register, as a
    CloudEvent, signed: `OrderHub-Signature: t=<unix>,v1=<hex>` over `"{t}.{event id}." + body`."""
    serializer_class = WebhookEndpointSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookEndpoint.objects.none()
        return WebhookEndpoint.objects.filter(client=self.request.user, active=True)

    @extend_schema(request=WebhookEndpointSerializer, responses={
        201: WebhookEndpointWithSecretSerializer,
        422: OpenApiResponse(ErrorSerializer, "`too_many_endpoints`: the client has as many as it may."),
    })
    def create(self, request, *args, **kwargs):
        payload = WebhookEndpointSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            endpoint = services.endpoint_create(client=request.user, **payload.validated_data)
        except services.TooManyEndpoints as exc:
            raise Unprocessable(str(exc), code="too_many_endpoints") from None
        except services.EndpointRefused as exc:
            raise serializers.ValidationError({"url": [str(exc)]}) from None
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: OpenApiResponse(description="Removed: nothing more is delivered to it.")})
    def destroy(self, request, *args, **kwargs):
        services.endpoint_remove(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: WebhookEndpointWithSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new secret, shown once. The previous one also signs for a day
        (ORDERHUB_WEBHOOK_SECRET_OVERLAP_SECONDS), so your receiver can switch with nothing refused."""
        endpoint = services.endpoint_rotate_secret(endpoint=self.get_object())
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data)
