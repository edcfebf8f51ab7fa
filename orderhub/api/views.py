"""API views: validate, call one service or selector, shape the output."""
import hashlib
import json

import django_filters
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from orderhub.api.errors import Conflict, Overloaded, Unprocessable
from orderhub.api.schema import ErrorSerializer
from orderhub.api.serializers import OrderCreateSerializer, OrderSerializer, ProductSerializer
from orderhub.orders import admission, selectors, services
from orderhub.orders.models import Order, OrderStatus
from sagas.models import SagaInstance


class ProductList(generics.ListAPIView):
    serializer_class = ProductSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.products_list()


class OrderFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices)

    class Meta:
        model = Order
        fields = ["status"]


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = OrderSerializer
    filterset_class = OrderFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular building the schema: no client
            return Order.objects.none()
        return selectors.orders_for_client(client=self.request.user)

    def get_serializer_context(self):
        return super().get_serializer_context() | {"sagas": getattr(self, "_sagas", {})}

    def _with_sagas(self, orders):
        ids = [order.saga_id for order in orders if order.saga_id]
        self._sagas = SagaInstance.objects.prefetch_related("steps").in_bulk(ids)

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        self._with_sagas(page)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, required=False,
                                     description="The ETag of a previous answer: 304 while the order is unchanged."),
                    OpenApiParameter("ETag", str, OpenApiParameter.HEADER, response=["200", "304"], required=True,
                                     description="This representation's tag, for If-None-Match.")],
        responses={200: OrderSerializer, 304: OpenApiResponse(description="Not modified since that ETag.")},
    )
    def retrieve(self, request, *args, **kwargs):
        """One order with its saga. Answers carry an `ETag`: poll with `If-None-Match` and an order
        that has not moved costs a 304 with no body. Reads are throttled apart from writes."""
        order = self.get_object()
        self._with_sagas([order])
        data = self.get_serializer(order).data
        etag = '"' + hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32] + '"'
        if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        return Response(data, headers={"ETag": etag})

    @extend_schema(
        request=OrderCreateSerializer,
        responses={
            202: OpenApiResponse(OrderSerializer, "Accepted: the order is placed and its saga started (or, with an "
                                                  "Idempotency-Key used before with the same body, that order)."),
            422: OpenApiResponse(ErrorSerializer, "`idempotency_key_reused`: the key was used with another body, or "
                                                  "is longer than 255 characters."),
            503: OpenApiResponse(ErrorSerializer, "`overloaded`: refused at the door, nothing created: too many "
                                                  "orders in progress (ORDERHUB_ADMISSION_MAX_IN_FLIGHT). Retry "
                                                  "after the Retry-After header's seconds."),
        },
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                             description="Up to 255 characters. The same key and body again answer the same order."),
            OpenApiParameter("Location", str, OpenApiParameter.HEADER, response=["202"], required=True,
                             description="The order's URL."),
            OpenApiParameter("Idempotent-Replayed", str, OpenApiParameter.HEADER, response=["202"], required=False,
                             enum=["true"], description="Present when the answer is an order placed earlier "
                                                        "with the same Idempotency-Key."),
        ],
    )
    def create(self, request, *args, **kwargs):
        payload = OrderCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 255:
            raise Unprocessable("Idempotency-Key must be at most 255 characters.")
        try:
            order, created = services.order_place(
                client=request.user,
                idempotency_key=key,
                fingerprint=services.request_fingerprint(request.data),
                request_id=getattr(request, "id", None),
                **payload.validated_data,
            )
        except services.IdempotencyConflict as exc:
            raise Unprocessable(str(exc), code="idempotency_key_reused") from None
        except admission.Overloaded as exc:
            raise Overloaded(str(exc), wait=exc.retry_after) from None
        self._with_sagas([order])
        headers = {"Location": request.build_absolute_uri(reverse("order-detail", args=[order.id]))}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return Response(self.get_serializer(order).data, status=status.HTTP_202_ACCEPTED, headers=headers)

    @extend_schema(request=None, responses={
        202: OpenApiResponse(OrderSerializer, "Accepted: the saga compensates what it did."),
        409: OpenApiResponse(ErrorSerializer, "`not_cancellable`: past the pivot (payment captured), or final."),
    })
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        order = self.get_object()
        try:
            order = services.order_cancel(order=order)
        except services.OrderNotCancellable as exc:
            raise Conflict(exc.detail, code="not_cancellable") from None
        self._with_sagas([order])
        return Response(self.get_serializer(order).data, status=status.HTTP_202_ACCEPTED)
