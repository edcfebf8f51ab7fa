"""Commands the payments service accepts."""
from .envelope import money, register, register_compensation, text, uuid_text

AUTHORIZE = register("payments.authorize", order_id=uuid_text, total=money, payment_token=text)
VOID = register_compensation("payments.void", order_id=uuid_text)
CAPTURE = register("payments.capture", order_id=uuid_text)
