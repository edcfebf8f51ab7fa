"""The sales projection (CQRS read side): applies order events to the tables in models.py, and
rebuilds them from the recorded history (the orders themselves) to the same numbers.

`apply` is idempotent: an event id already applied is skipped (ProcessedEvent), and an order is
counted once whatever arrives late or twice (ProjectedOrder: needs_attention may move on to any
final status, resolved, or failed or completed after an operator's retry; a final one never moves). The consumer and a rebuild take one advisory lock in turn."""
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connections, transaction
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Sum
from django.db.models.functions import TruncDate

from orderhub import events
from orderhub.reports.models import DailySales, OutcomeCount, ProcessedEvent, ProjectedOrder, SkuDailySales

QUEUE = "projections.sales"
BINDINGS = tuple(events.ORDER_ENDED.values())  # the events the projection subscribes to
ENDINGS = {kind: status for status, kind in events.ORDER_ENDED.items()}
RANK = {"needs_attention": 1}  # a later status may replace an earlier one of lower rank; final ones rank 2
LOCK_KEY = 0x0DE5A1E5
DATABASE = "default"


BadEvent = events.BadEvent  # an event the projection cannot apply as it is (dead-lettered by the consumer)


def validate(event) -> None:
    events.validate(event, types=ENDINGS, reader="this projection")


def decode(body: bytes) -> dict:
    return events.decode(body, types=ENDINGS, reader="this projection")


def _lock():
    with connections[DATABASE].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def _day(placed_at: str):
    return datetime.fromisoformat(placed_at.replace("Z", "+00:00")).astimezone(UTC).date()


def _add(model, key: dict, **amounts):
    row, _ = model.objects.get_or_create(**key)
    model.objects.filter(pk=row.pk).update(**{name: F(name) + value for name, value in amounts.items()})


def apply(event: dict) -> bool:
    """Apply one valid event; False when it changed nothing (seen before, or late)."""
    status, data = ENDINGS[event["type"]], event["data"]
    with transaction.atomic(using=DATABASE):
        _lock()
        if not ProcessedEvent.objects.get_or_create(event_id=event["id"])[1]:
            return False
        previous = ProjectedOrder.objects.filter(order_id=data["order_id"]).values_list("status", flat=True).first()
        if previous is not None and RANK.get(status, 2) <= RANK.get(previous, 2):
            return False
        ProjectedOrder.objects.update_or_create(order_id=data["order_id"], defaults={"status": status})
        if previous is not None:
            OutcomeCount.objects.filter(status=previous).update(orders=F("orders") - 1)
        _add(OutcomeCount, {"status": status}, orders=1)
        if status == "completed":
            day = _day(data["placed_at"])
            _add(DailySales, {"day": day}, orders=1, units=sum(item["quantity"] for item in data["items"]),
                 revenue=Decimal(data["total"]))
            for item in data["items"]:
                _add(SkuDailySales, {"day": day, "sku": item["sku"]}, units=item["quantity"],
                     revenue=Decimal(item["unit_price"]) * item["quantity"])
        return True


# --- the same numbers from the recorded history --------------------------------------------------
def from_orders() -> dict:
    """The report computed from the orders themselves (what a rebuild writes)."""
    from orderhub.orders.models import Order, OrderItem

    ended = Order.objects.filter(status__in=list(events.ORDER_ENDED))
    completed_items = OrderItem.objects.filter(order__status="completed").annotate(
        day=TruncDate("order__created_at", tzinfo=UTC))
    units_by_day = dict(completed_items.values("day").annotate(units=Sum("quantity")).values_list("day", "units"))
    by_day = [(row["day"], row["orders"], units_by_day.get(row["day"], 0), row["revenue"])
              for row in Order.objects.filter(status="completed").annotate(day=TruncDate("created_at", tzinfo=UTC))
              .values("day").annotate(orders=Count("id"), revenue=Sum("total")).order_by("day")]
    line = ExpressionWrapper(F("quantity") * F("unit_price"), output_field=DecimalField(max_digits=16, decimal_places=2))
    by_sku = [(row["day"], row["sku"], row["units"], row["revenue"])
              for row in completed_items.values("day", "sku").annotate(units=Sum("quantity"), revenue=Sum(line))
              .order_by("day", "sku")]
    by_outcome = dict(ended.values("status").annotate(n=Count("id")).values_list("status", "n"))
    return _normal({"by_day": by_day, "by_sku": by_sku, "by_outcome": by_outcome})


def from_projection() -> dict:
    """The report as the projection holds it."""
    return _normal({
        "by_day": list(DailySales.objects.order_by("day").values_list("day", "orders", "units", "revenue")),
        "by_sku": list(SkuDailySales.objects.order_by("day", "sku").values_list("day", "sku", "units", "revenue")),
        "by_outcome": dict(OutcomeCount.objects.values_list("status", "orders")),
    })


def _normal(report):
    money = lambda value: Decimal(value).quantize(Decimal("0.01"))  # noqa: E731
    return {
        "by_day": [(day, orders, units, money(revenue)) for day, orders, units, revenue in report["by_day"] if orders],
        "by_sku": [(day, sku, units, money(revenue)) for day, sku, units, revenue in report["by_sku"] if units],
        "by_outcome": {status: n for status, n in sorted(report["by_outcome"].items()) if n},
    }


def rebuild() -> dict:
    """Replace the projection with the report computed from the orders; returns it. Events that
    arrive afterwards for orders already counted change nothing."""
    from orderhub.orders.models import Order

    with transaction.atomic(using=DATABASE):
        _lock()
        report = from_orders()
        for model in (DailySales, SkuDailySales, OutcomeCount, ProjectedOrder):
            model.objects.all().delete()
        DailySales.objects.bulk_create(DailySales(day=d, orders=o, units=u, revenue=r) for d, o, u, r in report["by_day"])
        SkuDailySales.objects.bulk_create(SkuDailySales(day=d, sku=s, units=u, revenue=r)
                                          for d, s, u, r in report["by_sku"])
        OutcomeCount.objects.bulk_create(OutcomeCount(status=s, orders=n) for s, n in report["by_outcome"].items())
        batch = []
        for order_id, status in Order.objects.filter(status__in=list(events.ORDER_ENDED)).values_list(
                "id", "status").iterator(chunk_size=2000):
            batch.append(ProjectedOrder(order_id=order_id, status=status))
            if len(batch) >= 2000:
                ProjectedOrder.objects.bulk_create(batch)
                batch = []
        ProjectedOrder.objects.bulk_create(batch)
    return report


def as_json(report) -> dict:
    """The report as the API serves it: money as decimal strings."""
    totals = defaultdict(lambda: {"orders": 0, "units": 0, "revenue": Decimal("0.00")})
    for day, orders, units, revenue in report["by_day"]:
        totals[day] = {"orders": orders, "units": units, "revenue": revenue}
    return {
        "by_day": [{"day": day.isoformat(), "orders": row["orders"], "units": row["units"],
                    "revenue": str(row["revenue"])} for day, row in sorted(totals.items())],
        "by_sku": [{"day": day.isoformat(), "sku": sku, "units": units, "revenue": str(revenue)}
                   for day, sku, units, revenue in report["by_sku"]],
        "by_outcome": report["by_outcome"],
    }
