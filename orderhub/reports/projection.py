"""The sales projection (CQRS read side): applies order events to the tables in models.py, and
rebuilds them from the recorded history (the orders themselves) to the same numbers.

`apply` is idempotent: an event id already applied is skipped (ProcessedEvent), and an order is
counted once whatever arrives late or twice (ProjectedOrder: needs_attention may move on to any
final status, resolved, or failed or completed after an operator's retry; a final one never moves). The consumer and a rebuild take one advisory lock in turn."""
import uuid
from collections import Counter, defaultdict
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


def apply(event: dict) -> bool:
    """Apply one valid event; False when it changed nothing (seen before, or late)."""
    return apply_many([event])[0]


def apply_many(batch: list[dict]) -> list[bool]:
    """Apply valid events in order, in one transaction and a statement or two per table; for each,
    False when it changed nothing (seen before, in the table or earlier in the batch, or late)."""
    with transaction.atomic(using=DATABASE):
        _lock()
        seen = set(ProcessedEvent.objects.filter(event_id__in=[event["id"] for event in batch])
                   .values_list("event_id", flat=True))
        order_ids = {str(uuid.UUID(event["data"]["order_id"])) for event in batch}
        counted = {str(order_id): status for order_id, status in
                   ProjectedOrder.objects.filter(order_id__in=order_ids).values_list("order_id", "status")}
        new_events, changed, results = [], {}, []
        outcomes = Counter()
        days = defaultdict(lambda: {"orders": 0, "units": 0, "revenue": Decimal("0")})
        skus = defaultdict(lambda: {"units": 0, "revenue": Decimal("0")})
        for event in batch:
            if event["id"] in seen:
                results.append(False)
                continue
            seen.add(event["id"])
            new_events.append(ProcessedEvent(event_id=event["id"]))
            status, data = ENDINGS[event["type"]], event["data"]
            order_id = str(uuid.UUID(data["order_id"]))
            previous = counted.get(order_id)
            if previous is not None and RANK.get(status, 2) <= RANK.get(previous, 2):
                results.append(False)
                continue
            counted[order_id] = changed[order_id] = status
            if previous is not None:
                outcomes[previous] -= 1
            outcomes[status] += 1
            if status == "completed":
                day = days[_day(data["placed_at"])]
                day["orders"] += 1
                day["units"] += sum(item["quantity"] for item in data["items"])
                day["revenue"] += Decimal(data["total"])
                for item in data["items"]:
                    sku = skus[(_day(data["placed_at"]), item["sku"])]
                    sku["units"] += item["quantity"]
                    sku["revenue"] += Decimal(item["unit_price"]) * item["quantity"]
            results.append(True)
        ProcessedEvent.objects.bulk_create(new_events)
        ProjectedOrder.objects.bulk_create([ProjectedOrder(order_id=order_id, status=status)
                                            for order_id, status in changed.items()],
                                           update_conflicts=True, unique_fields=["order_id"], update_fields=["status"])
        for status, delta in outcomes.items():
            if delta < 0:  # an order counted under a status it has left: that row exists
                OutcomeCount.objects.filter(status=status).update(orders=F("orders") + delta)
        _add_many(OutcomeCount, ["status"], {(status,): {"orders": delta} for status, delta in outcomes.items()
                                             if delta > 0})
        _add_many(DailySales, ["day"], {(day,): amounts for day, amounts in days.items()})
        _add_many(SkuDailySales, ["day", "sku"], dict(skus))
    return results


def _add_many(model, keys: list[str], rows: dict):
    """Add each row's amounts to the row of its key, inserting the rows that are not there yet, in
    one statement (INSERT … ON CONFLICT DO UPDATE SET amount = amount + EXCLUDED.amount)."""
    if not rows:
        return
    connection = connections[DATABASE]
    quote = connection.ops.quote_name
    amounts = list(next(iter(rows.values())))
    columns = [quote(model._meta.get_field(name).column) for name in (*keys, *amounts)]
    table = quote(model._meta.db_table)
    placeholders = f"({', '.join(['%s'] * len(columns))})"
    increments = ", ".join(f"{column} = {table}.{column} + EXCLUDED.{column}" for column in columns[len(keys):])
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([placeholders] * len(rows))} "
           f"ON CONFLICT ({', '.join(columns[:len(keys)])}) DO UPDATE SET {increments}")
    params = [value for key, row in rows.items() for value in (*key, *(row[name] for name in amounts))]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


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
