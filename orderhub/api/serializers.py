"""Serializers: validate input, shape output. No business logic here."""
import re
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orderhub.orders.models import FAILURE_REASONS, Order, OrderItem, OrderStatus, Product
from sagas.models import SagaStatus, StepStatus

MAX_ITEMS = 50
MAX_QUANTITY = 1000
# The largest total an order can hold (its column is numeric(12, 2)).
_total = Order._meta.get_field("total")
MAX_TOTAL = Decimal(10) ** (_total.max_digits - _total.decimal_places) - Decimal("0.01")


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["sku", "name", "price"]


class OrderLineInputSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)

    def to_internal_value(self, data):
        # Refuse "2" and 2.0 as quantities: a quantity is a JSON integer.
        if isinstance(data, dict) and ("quantity" in data) and (
            isinstance(data["quantity"], bool) or not isinstance(data["quantity"], int)
        ):
            raise serializers.ValidationError({"quantity": ["A valid integer is required."]})
        return super().to_internal_value(data)


class ShippingAddressSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    line1 = serializers.CharField(max_length=200)
    line2 = serializers.CharField(max_length=200, required=False, allow_blank=True)
    city = serializers.CharField(max_length=100)
    postal_code = serializers.CharField(max_length=20)
    country = serializers.CharField()

    def validate_country(self, value):
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise serializers.ValidationError("Must be a two-letter ISO 3166 country code.")
        return value.upper()


class OrderCreateSerializer(serializers.Serializer):
    items = OrderLineInputSerializer(many=True, allow_empty=False, max_length=MAX_ITEMS)
    payment_token = serializers.CharField(max_length=100)
    shipping_address = ShippingAddressSerializer()

    def validate_items(self, items):
        skus = [item["sku"] for item in items]
        duplicates = sorted({sku for sku in skus if skus.count(sku) > 1})
        if duplicates:
            raise serializers.ValidationError(f"Each sku may appear once; repeated: {', '.join(duplicates)}.")
        prices = dict(Product.objects.filter(sku__in=skus).values_list("sku", "price"))
        unknown = [sku for sku in skus if sku not in prices]
        if unknown:
            raise serializers.ValidationError(f"Unknown sku: {', '.join(unknown)}.")
        total = sum((prices[item["sku"]] * item["quantity"] for item in items), Decimal("0"))
        if total > MAX_TOTAL:
            raise serializers.ValidationError(f"The order's total {total} is over the most an order may hold ({MAX_TOTAL}).")
        return items


class OrderItemSerializer(serializers.ModelSerializer):
    line_total = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)

    class Meta:
        model = OrderItem
        fields = ["sku", "name", "quantity", "unit_price", "line_total"]


class SagaStepSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=StepStatus.choices)
    attempts = serializers.IntegerField()
    compensation_attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    compensated_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "SagaStep"


class SagaSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=SagaStatus.choices)
    current_step = serializers.IntegerField()
    steps = SagaStepSerializer(many=True, source="steps.all")

    class Meta:
        ref_name = "Saga"


class ShippingAddressOutputSerializer(ShippingAddressSerializer):
    class Meta:
        ref_name = "ShippingAddress"


class OrderSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=OrderStatus.choices, read_only=True)
    failure_reason = serializers.ChoiceField(choices=FAILURE_REASONS, allow_null=True, read_only=True,
                                             help_text="Why the order did not complete (null while it has not "
                                                       "failed). A code this list lacks may appear: treat it as "
                                                       "a failure.")
    shipping_address = ShippingAddressOutputSerializer(read_only=True)
    items = OrderItemSerializer(many=True, read_only=True)
    saga = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = [
            "id", "status", "failure_reason", "total", "items", "shipping_address",
            "created_at", "updated_at", "saga",
        ]

    @extend_schema_field(SagaSerializer(allow_null=True))
    def get_saga(self, order) -> dict | None:
        saga = self.context.get("sagas", {}).get(order.saga_id)
        return SagaSerializer(saga).data if saga is not None else None
