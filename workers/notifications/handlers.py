"""Notifications' command handler: tell the customer the order is confirmed (sent once per saga)."""
from contracts import Command
from workers.messaging import handles
from workers.notifications.models import Notification

DB = "notifications"


@handles("notifications.send")
def send(cmd: Command):
    address = cmd.payload.get("shipping_address") or {}
    tracking = cmd.payload.get("results", {}).get("create_shipment", {}).get("tracking_number", "")
    notification, _ = Notification.objects.using(DB).get_or_create(
        saga_id=cmd.saga_id,
        defaults={
            "order_id": cmd.payload["order_id"],
            "recipient": address.get("name", ""),
            "subject": f"Order {cmd.payload['order_id']} confirmed",
            "body": f"Your order is on its way. Tracking number: {tracking or 'to follow'}.",
        },
    )
    return cmd.succeed(notification_id=notification.pk)
