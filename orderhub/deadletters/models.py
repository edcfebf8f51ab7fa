"""The archive of dead-lettered messages, in the orderhub database."""
from django.db import models


class DeadLetter(models.Model):
    class Status(models.TextChoices):
        ARCHIVED = "archived"
        REPLAYED = "replayed"
        DISCARDED = "discarded"

    # The message's key (its id, or a digest of a body without one) and the queue it died in.
    message_key = models.CharField(max_length=100)
    queue = models.CharField(max_length=200)
    message_type = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField()
    death_count = models.PositiveIntegerField(default=1)
    headers = models.JSONField(default=dict)
    properties = models.JSONField(default=dict)
    body = models.TextField()
    body_base64 = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ARCHIVED)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.PositiveIntegerField(default=0)
    discarded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "dead_letter"
        ordering = ["-last_seen"]
        constraints = [models.UniqueConstraint(fields=["message_key", "queue"], name="dead_letter_unique_per_queue")]
        indexes = [models.Index(fields=["status", "queue"])]

    def __str__(self):
        return f"{self.queue} {self.message_key} ({self.status})"
