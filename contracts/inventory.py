"""Commands the inventory service accepts."""
from .envelope import lines, register, uuid_text

RESERVE = register("inventory.reserve", order_id=uuid_text, items=lines)
RELEASE = register("inventory.release", order_id=uuid_text)
