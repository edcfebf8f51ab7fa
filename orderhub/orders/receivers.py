"""Keeps an order's status in step with its saga, in the saga's own transaction."""
from django.dispatch import receiver
from django.utils import timezone

from orderhub.orders.models import Order, OrderStatus
from sagas.engine import saga_ended
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
