"""Reserve commands and the stock they draw on, for the tests of the workers' inbox and batches."""
import uuid

from contracts import Command
from tests.unit.sagas.saga_harness import place_order_context
from workers.inventory.models import StockItem


def reserve_command(quantity=2, *, sku="INBOX-1", **overrides):
    context = place_order_context(items=[{"sku": sku, "quantity": quantity}]) | overrides
    return Command(type="inventory.reserve", saga_id=str(uuid.uuid4()), step="reserve_stock", attempt=1,
                   payload=context, correlation_id=context["order_id"])


def available(sku="INBOX-1"):
    return StockItem.objects.using("inventory").get(sku=sku).available
