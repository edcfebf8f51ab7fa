"""Notifications' own data: what was sent, one confirmation per saga."""
from django.db import models

from workers.messaging import InboxMessage


class Notification(models.Model):
    saga_id = models.UUIDField(unique=True)
    order_id = models.UUIDField(db_index=True)
    recipient = models.CharField(max_length=200)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "notifications_notification"

    def __str__(self):
        return f"{self.subject} to {self.recipient}"


class Inbox(InboxMessage):
    class Meta:
        db_table = "notifications_inbox"
