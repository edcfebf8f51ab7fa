"""Placing an order: reserve stock, authorize payment, create the shipment, capture, notify."""
from contracts import Retry
from sagas.engine import Saga, Step

# The payment provider answers in well under a second; a short deadline fails a hung
# authorization quickly (resent once with the same message id first) and compensates it.
PROVIDER = Retry(attempts=3, initial=1.0, coefficient=2.0, maximum=4.0, non_retryable=("ProviderError",))

PLACE_ORDER = Saga(
    "place_order",
    Step("reserve_stock",   "inventory.reserve",  compensate="inventory.release"),
    Step("authorize",       "payments.authorize", compensate="payments.void", retry=PROVIDER, deadline=4.0, resends=1),
    Step("create_shipment", "shipping.create",    compensate="shipping.cancel"),
    Step("capture",         "payments.capture",   pivot=True, retry=PROVIDER, max_attempts=5),
    Step("notify",          "notifications.send", retriable=True, retry=Retry(attempts=5, initial=1.0, maximum=30.0), max_attempts=5),
)
