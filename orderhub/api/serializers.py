"""Serializers: validate input, shape output. No business logic here."""
import re
from decimal import Decimal

from rest_framework import serializers

from orderhub.orders.models import Order, OrderItem, Product

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
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    compensation_attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField()
    compensated_at = serializers.DateTimeField()


class SagaSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    current_step = serializers.IntegerField()
    steps = SagaStepSerializer(many=True, source="steps.all")


class OrderSerializer(serializers.ModelSerializer):
    items = OrderItemSerializer(many=True, read_only=True)
    saga = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = [
            "id", "status", "failure_reason", "total", "items", "shipping_address",
            "created_at", "updated_at", "saga",
        ]

    def get_saga(self, order) -> dict | None:
        saga = self.context.get("sagas", {}).get(order.saga_id)
        return SagaSerializer(saga).data if saga is not None else None
