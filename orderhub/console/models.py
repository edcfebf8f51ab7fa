"""The audit trail of operators' actions, in the orderhub database."""
from django.db import models


class Action(models.TextChoices):
    RETRY_SAGA = "retry_saga", "retry a saga"
    CANCEL_SAGA = "cancel_saga", "cancel a saga"
    RESOLVE_SAGA = "resolve_saga", "mark resolved"
    REPLAY_DEAD_LETTER = "replay_dead_letter", "replay a dead letter"
    DISCARD_DEAD_LETTER = "discard_dead_letter", "discard a dead letter"
    RESTOCK = "restock", "restock a sku"
    MOVE_SAGA = "move_saga", "move a saga to another definition version"


class Target(models.TextChoices):
    SAGA = "saga"
    ORDER = "order"
    DEAD_LETTER = "dead_letter", "dead letter"
    SKU = "sku"


class AuditEntry(models.Model):
    """One row per real change an operator made, from the admin or the command line. A click that
    changed nothing (the second of two) leaves no row: it is answered "nothing to do"."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    operator = models.CharField(max_length=150, help_text="the admin user, or the OS user for the command line")
    via = models.CharField(max_length=10, choices=[("admin", "admin"), ("cli", "command line")])
    action = models.CharField(max_length=30, choices=Action.choices)
    target_type = models.CharField(max_length=20, choices=Target.choices)
    target_id = models.CharField(max_length=100)
    reason = models.TextField()
    outcome = models.TextField()
    # Set when the same request must never act twice (a form submitted twice): restock.
    request_id = models.UUIDField(null=True, blank=True, unique=True)

    class Meta:
        db_table = "console_audit"
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"])]
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"
        default_permissions = ("view",)
        # One permission per action; the `operators` group holds them all (roles.py).
        permissions = [
            ("retry_saga", "Can retry a saga"),
            ("cancel_saga", "Can cancel a saga before its pivot"),
            ("resolve_saga", "Can mark a parked saga (a needs_attention order) resolved"),
            ("replay_dead_letter", "Can replay dead letters"),
            ("discard_dead_letter", "Can discard dead letters"),
            ("restock", "Can restock a sku"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.operator} {self.action} {self.target_type} {self.target_id}"
