"""Order selectors: the functions that read."""
from orderhub.orders.models import Order, Product
from sagas.models import SagaInstance


def orders_for_client(*, client):
    return Order.objects.filter(client=client).prefetch_related("items")


def order_saga(*, order: Order):
    if order.saga_id is None:
        return None
    return SagaInstance.objects.filter(id=order.saga_id).prefetch_related("steps").first()


def products_list():
    return Product.objects.all()
