"""Placing an order: reserve stock, authorize payment, create the shipment, capture, notify."""
from sagas.engine import Retry, Saga, Step

PLACE_ORDER = Saga(
    "place_order",
    Step("reserve_stock",   "inventory.reserve",  compensate="inventory.release"),
    Step("authorize",       "payments.authorize", compensate="payments.void", retry=Retry(attempts=5)),
    Step("create_shipment", "shipping.create",    compensate="shipping.cancel"),
    Step("capture",         "payments.capture",   pivot=True),
    Step("notify",          "notifications.send", retriable=True),
)
