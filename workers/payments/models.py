"""Payments' own data: one payment per saga, and the sandbox provider's ledger."""
from django.db import models

from workers.messaging import InboxMessage


class Payment(models.Model):
    class Status(models.TextChoices):
        # Claimed by an authorization in progress; only ever seen inside its own transaction.
        PENDING = "pending"
        AUTHORIZED = "authorized"
        CAPTURED = "captured"
        VOIDED = "voided"
        TOMBSTONE = "tombstone"  # voided before it was authorized: a late authorize is refused

    saga_id = models.UUIDField(unique=True)
    order_id = models.UUIDField(db_index=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=20, choices=Status.choices)
    provider_ref = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    captured_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "payments_payment"

    def __str__(self):
        return f"payment {self.saga_id} {self.amount} ({self.status})"


class ProviderCharge(models.Model):
    """The sandbox provider's own ledger: written on its own connection, as a bank would, so that
    it survives a rollback of the payments service's transaction."""

    class Status(models.TextChoices):
        AUTHORIZED = "authorized"
        DECLINED = "declined"
        CAPTURED = "captured"
        VOIDED = "voided"

    ref = models.CharField(max_length=64, unique=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    token = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=20, choices=Status.choices)
    decline_reason = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "payments_provider_charge"


class Inbox(InboxMessage):
    class Meta:
        db_table = "payments_inbox"


class SandboxFault(models.Model):
    """The sandbox provider's fault state: how often a key has failed, and whether an operator
    has lifted a standing fault (tok_void_broken) so the next try succeeds."""

    key = models.CharField(max_length=200, unique=True)
    failures = models.PositiveIntegerField(default=0)
    lifted = models.BooleanField(default=False)

    class Meta:
        db_table = "payments_sandbox_fault"
