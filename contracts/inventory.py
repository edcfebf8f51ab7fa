"""Commands the inventory service accepts."""
from .envelope import lines, register, register_compensation, uuid_text

RESERVE = register("inventory.reserve", order_id=uuid_text, items=lines)
RELEASE = register_compensation("inventory.release", order_id=uuid_text)
