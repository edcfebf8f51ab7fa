"""Commands the shipping service accepts."""
from .envelope import mapping, register, uuid_text

CREATE = register("shipping.create", order_id=uuid_text, shipping_address=mapping)
CANCEL = register("shipping.cancel", order_id=uuid_text)
