"""The sales projection (orderhub/reports): order events in, the same numbers a rebuild from the
orders gives, whatever arrives twice or late; and GET /api/reports/sales/ for staff only."""
import json
import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from orderhub import events
from orderhub.apikeys.services import key_create
from orderhub.orders.models import Order, Product
from orderhub.orders.services import order_place
from orderhub.reports import projection
from orderhub.reports.models import DailySales, OutcomeCount
from workers.inventory.models import StockItem

pytestmark = pytest.mark.django_db(databases="__all__")

ADDRESS = {"name": "Ada", "line1": "1 Loop Rd", "city": "London", "postal_code": "N1", "country": "GB"}


@pytest.fixture
def shop():
    for sku, price in (("P-1", "2.50"), ("P-2", "10.00")):
        Product.objects.create(sku=sku, name=sku, price=Decimal(price))
        StockItem.objects.create(sku=sku, available=1000)
    return get_user_model().objects.create(username=f"p-{uuid.uuid4().hex[:6]}")


def ended(client, status, items=(("P-1", 2), ("P-2", 1)), reason=None):
    order, _ = order_place(client=client, items=[{"sku": s, "quantity": q} for s, q in items], payment_token="tok_ok",
                           shipping_address=ADDRESS)
    Order.objects.filter(id=order.id).update(status=status, failure_reason=reason)
    return Order.objects.prefetch_related("items").get(id=order.id)


def event_of(order, status=None):
    status = status or order.status
    data = events.order_data(order) | {"status": status}
    return json.loads(json.dumps(events.cloudevent(events.ORDER_ENDED[status], subject=order.id, data=data,
                                                   saga_id=order.saga_id)))


def test_applied_events_give_the_numbers_of_a_rebuild_from_the_orders(shop):
    orders = [ended(shop, "completed"), ended(shop, "completed", items=(("P-2", 3),)),
              ended(shop, "failed", reason="payment_declined"), ended(shop, "cancelled", reason="cancelled_by_client")]
    for order in orders:
        assert projection.apply(projection.decode(json.dumps(event_of(order)).encode()))

    report = projection.from_projection()
    assert report == projection.from_orders()
    [(day, count, units, revenue)] = report["by_day"]
    assert (count, units, revenue) == (2, 6, Decimal("45.00"))  # 2*2.50+10 and 3*10
    assert report["by_outcome"] == {"cancelled": 1, "completed": 2, "failed": 1}
    assert [(sku, units, revenue) for _, sku, units, revenue in report["by_sku"]] == [
        ("P-1", 2, Decimal("5.00")), ("P-2", 4, Decimal("40.00"))]


def test_an_event_twice_or_a_second_event_for_a_counted_order_changes_nothing(shop):
    order = ended(shop, "completed")
    event = event_of(order)
    assert projection.apply(event)
    before = projection.from_projection()

    assert not projection.apply(event)  # the same id, redelivered
    assert not projection.apply(event | {"id": str(uuid.uuid4())})  # published twice after a crash
    assert projection.from_projection() == before


def test_needs_attention_moves_on_to_resolved_but_never_back(shop):
    order = ended(shop, "needs_attention", reason="handler_error")
    assert projection.apply(event_of(order))
    assert projection.from_projection()["by_outcome"] == {"needs_attention": 1}
    assert projection.apply(event_of(order, "resolved"))
    assert projection.from_projection()["by_outcome"] == {"resolved": 1}
    assert not projection.apply(event_of(order, "needs_attention") | {"id": str(uuid.uuid4())})  # late
    assert projection.from_projection()["by_outcome"] == {"resolved": 1}


@pytest.mark.parametrize("final", ["failed", "completed"])
def test_needs_attention_moves_on_to_the_end_an_operators_retry_reaches(shop, final):
    order = ended(shop, "needs_attention", reason="retries_exhausted")
    assert projection.apply(event_of(order))
    Order.objects.filter(id=order.id).update(status=final, failure_reason=None if final == "completed" else "x")
    assert projection.apply(event_of(Order.objects.get(id=order.id)))
    assert projection.from_projection() == projection.from_orders()
    assert projection.from_projection()["by_outcome"] == {final: 1}
    assert not projection.apply(event_of(order, "needs_attention") | {"id": str(uuid.uuid4())})  # late
    assert projection.from_projection()["by_outcome"] == {final: 1}


def test_a_batch_is_applied_in_order_with_the_answers_and_numbers_of_its_events_one_by_one(shop):
    first, second = ended(shop, "completed"), ended(shop, "completed", items=(("P-1", 1), ("P-1", 3)))
    parked = ended(shop, "needs_attention", reason="handler_error")
    failed = ended(shop, "failed", reason="payment_declined")
    already = ended(shop, "completed")
    assert projection.apply(event_of(already))  # counted by an earlier batch
    again = event_of(first)
    batch = [again, event_of(second), event_of(parked), again,  # the same id twice in one batch
             event_of(parked, "resolved"), event_of(parked, "needs_attention"),  # on, then a late one back
             event_of(failed), event_of(already), event_of(first) | {"id": str(uuid.uuid4())}]
    Order.objects.filter(id=parked.id).update(status="resolved")

    assert projection.apply_many(batch) == [True, True, True, False, True, False, True, False, False]

    report = projection.from_projection()
    assert report == projection.from_orders()
    assert report["by_outcome"] == {"completed": 3, "failed": 1, "resolved": 1}
    [(_, orders, units, revenue)] = report["by_day"]
    assert (orders, units, revenue) == (3, 10, Decimal("40.00"))  # two of 2*2.50+10, one of 4*2.50
    assert projection.apply_many(batch) == [False] * len(batch)  # the whole batch redelivered
    assert projection.from_projection() == report


def test_a_rebuild_writes_the_same_numbers_and_later_events_for_counted_orders_change_nothing(shop):
    counted = ended(shop, "completed")
    DailySales.objects.create(day="2001-01-01", orders=99, units=1, revenue=Decimal("1.00"))  # damage
    OutcomeCount.objects.create(status="failed", orders=7)

    report = projection.rebuild()

    assert report == projection.from_orders() == projection.from_projection()
    assert not projection.apply(event_of(counted))
    assert projection.from_projection() == report


@pytest.mark.parametrize("body, why", [
    (b"\xff\xfe", "not JSON"),
    (b'{"type": "order.placed"}', "not an event this projection reads"),
    (b'[1, 2]', "not an event this projection reads"),
])
def test_what_the_projection_cannot_read_is_refused_with_a_reason(body, why):
    with pytest.raises(projection.BadEvent, match=why):
        projection.decode(body)


def test_an_event_that_breaks_its_schema_is_refused(shop):
    event = event_of(ended(shop, "completed"))
    event["data"]["total"] = 45.0  # a float
    with pytest.raises(projection.BadEvent, match="breaks its schema"):
        projection.decode(json.dumps(event).encode())


def test_staff_read_the_report_clients_do_not(shop):
    projection.apply(event_of(ended(shop, "completed")))
    staff = get_user_model().objects.create_user("boss", password="pw-local-only", is_staff=True)
    browser = APIClient()
    browser.force_login(staff)

    body = browser.get("/api/reports/sales/").json()
    assert body["by_outcome"] == {"completed": 1}
    assert body["by_day"][0]["revenue"] == "15.00" and body["by_day"][0]["units"] == 3
    assert browser.get("/api/reports/sales/?since=2001-01-01&until=2001-01-02").json()["by_day"] == []
    bad = browser.get("/api/reports/sales/?since=yesterday")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid"

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key_create(client=shop, name='t')[1]}")
    assert client.get("/api/reports/sales/").status_code == 403
    assert APIClient().get("/api/reports/sales/").status_code in (401, 403)
