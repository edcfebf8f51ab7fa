"""Commands the notifications service accepts."""
from .envelope import register, uuid_text

SEND = register("notifications.send", order_id=uuid_text)
