"""Commands the shipping service accepts."""
from .envelope import mapping, register, register_compensation, uuid_text

CREATE = register("shipping.create", order_id=uuid_text, shipping_address=mapping)
CANCEL = register_compensation("shipping.cancel", order_id=uuid_text)
