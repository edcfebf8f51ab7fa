"""Keeps an order's status in step with its saga, and announces its domain events
(orderhub/events.py), in the saga's own transaction."""
from django.dispatch import receiver
from django.utils import timezone

from orderhub import events
from orderhub.orders.models import Order, OrderStatus
from sagas.engine import saga_ended, saga_resumed, step_succeeded
from sagas.models import SagaStatus


def order_status_for(saga):
    if saga.status == SagaStatus.COMPLETED:
        return OrderStatus.COMPLETED, None
    if saga.status == SagaStatus.RESOLVED:
        return OrderStatus.RESOLVED, saga.failure_reason or None
    if saga.status in (SagaStatus.COMPENSATION_FAILED, SagaStatus.STUCK):
        return OrderStatus.NEEDS_ATTENTION, saga.failure_reason or None
    if saga.failure_reason == "cancelled_by_client":
        return OrderStatus.CANCELLED, "cancelled_by_client"
    return OrderStatus.FAILED, saga.failure_reason or None


@receiver(saga_ended)
def update_order_when_saga_ends(sender, saga, **kwargs):
    if saga.saga_type != "place_order":
        return
    status, reason = order_status_for(saga)
    Order.objects.filter(id=saga.correlation_id).update(status=status, failure_reason=reason, updated_at=timezone.now())
    order = Order.objects.prefetch_related("items").filter(id=saga.correlation_id).first()
    if order is not None:
        events.event_record(events.ORDER_ENDED[status], subject=order.id, data=events.order_data(order),
                            saga_id=saga.id)


@receiver(saga_resumed)
def reopen_order_when_saga_resumes(sender, saga, **kwargs):
    """A needs_attention order whose saga works again (an operator's retry, a late success) is
    pending until the saga ends again: a client polling it never reads a parked state that is over."""
    if saga.saga_type != "place_order":
        return
    Order.objects.filter(id=saga.correlation_id, status=OrderStatus.NEEDS_ATTENTION).update(
        status=OrderStatus.PENDING, failure_reason=None, updated_at=timezone.now())


@receiver(step_succeeded)
def announce_payment_and_shipment(sender, saga, step, data, **kwargs):
    """The saga recorded the participant's answer: the fact is the order's, announced with it."""
    if saga.saga_type != "place_order":
        return
    data = data or {}
    if step == "capture":
        events.event_record("payment.captured", subject=saga.correlation_id, saga_id=saga.id, data={
            "order_id": str(saga.correlation_id), "payment_id": data.get("payment_id"),
            "amount": str(data.get("captured") or saga.context.get("total")),
        })
    elif step == "create_shipment":
        events.event_record("shipment.created", subject=saga.correlation_id, saga_id=saga.id, data={
            "order_id": str(saga.correlation_id), "tracking_number": data.get("tracking_number"),
            "country": (saga.context.get("shipping_address") or {}).get("country"),
        })
