"""GET /api/reports/sales/: the sales projection, for staff (the admin's session, or a staff
user's API key)."""
import datetime

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from orderhub.api.schema import ERRORS, ErrorSerializer
from orderhub.apikeys.authentication import ClientKeyAuthentication
from orderhub.reports import projection


class DaySerializer(serializers.Serializer):
    day = serializers.DateField()
    orders = serializers.IntegerField(help_text="Completed orders placed that day (UTC).")
    units = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=True)


class SkuDaySerializer(serializers.Serializer):
    day = serializers.DateField()
    sku = serializers.CharField()
    units = serializers.IntegerField()
    revenue = serializers.DecimalField(max_digits=16, decimal_places=2, coerce_to_string=True)


class SalesReportSerializer(serializers.Serializer):
    by_day = DaySerializer(many=True)
    by_sku = SkuDaySerializer(many=True)
    by_outcome = serializers.DictField(child=serializers.IntegerField(),
                                       help_text="Ended orders by status: completed, failed, cancelled, "
                                                 "needs_attention, resolved.")


class RangeSerializer(serializers.Serializer):
    since = serializers.DateField(required=False, help_text="First day (UTC), inclusive.")
    until = serializers.DateField(required=False, help_text="Last day (UTC), inclusive.")

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["since"] > attrs["until"]:
            raise serializers.ValidationError({"until": ["must not be before since"]})
        return attrs


class SalesReport(APIView):
    authentication_classes = [SessionAuthentication, ClientKeyAuthentication]
    permission_classes = [IsAdminUser]

    @extend_schema(
        summary="Sales: revenue and units by day and by sku, orders by outcome (staff only)",
        parameters=[OpenApiParameter("since", datetime.date), OpenApiParameter("until", datetime.date)],
        responses={200: SalesReportSerializer, 400: OpenApiResponse(ErrorSerializer, ERRORS["400"]),
                   403: OpenApiResponse(ErrorSerializer, "Only staff may read reports.")},
    )
    def get(self, request):
        window = RangeSerializer(data=request.query_params)
        window.is_valid(raise_exception=True)
        since, until = window.validated_data.get("since"), window.validated_data.get("until")
        report = projection.as_json(projection.from_projection())
        inside = lambda row: (not since or row["day"] >= since.isoformat()) and (  # noqa: E731
            not until or row["day"] <= until.isoformat())
        report["by_day"] = [row for row in report["by_day"] if inside(row)]
        report["by_sku"] = [row for row in report["by_sku"] if inside(row)]
        return Response(report)
