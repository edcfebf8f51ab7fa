"""Commands the inventory service accepts."""
from .envelope import lines, positive_int, register, register_compensation, register_one_way, text, uuid_text

RESERVE = register("inventory.reserve", order_id=uuid_text, items=lines)
RELEASE = register_compensation("inventory.release", order_id=uuid_text)
# An operator's restock (orderhub/console): sent through the orchestrator's outbox, applied once.
RESTOCK = register_one_way("inventory.restock", sku=text, quantity=positive_int, reason=text, operator=text)
