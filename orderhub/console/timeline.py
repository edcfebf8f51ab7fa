"""A saga as an operator reads it: one row per thing that happened, the steps still to come, the
rows it made in each domain's database, and the audit trail. Used by the admin pages and by
`manage.py sagas show`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ValidationError
from django.urls import NoReverseMatch, reverse

from orderhub.console.models import AuditEntry, Target
from sagas.engine import VERSIONS
from sagas.models import SagaEvent, SagaInstance, SagaStatus, StepStatus


@dataclass
class Row:
    at: datetime
    step: str
    attempt: int | None
    what: str
    outcome: str = ""
    took: str = ""  # from the command to this reply
    detail: str = ""
    kind: str = ""


@dataclass
class DomainRecord:
    domain: str
    label: str
    url: str | None


@dataclass
class SagaView:
    saga: SagaInstance
    rows: list[Row]
    steps: list
    to_come: list[str]
    records: list[DomainRecord] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)


def for_saga(saga_id) -> SagaView:
    from orderhub.console.actions import ActionRefused

    try:
        saga = SagaInstance.objects.get(id=saga_id)
    except (SagaInstance.DoesNotExist, ValidationError, ValueError):
        raise ActionRefused(f"no saga {saga_id}") from None
    steps = list(saga.steps.order_by("index"))
    definition = VERSIONS.get((saga.saga_type, saga.definition_version))
    pending = {step.name for step in steps if step.status == StepStatus.PENDING}
    to_come = [spec.name for spec in definition.steps if spec.name in pending] if definition else sorted(pending)
    if saga.status != SagaStatus.RUNNING:  # compensating, or ended: nothing goes forward any more
        to_come = []
    for step in steps:
        step.took = _took((step.finished_at - step.started_at).total_seconds()) \
            if step.started_at and step.finished_at else ""
    audit = list(AuditEntry.objects.filter(target_type=Target.SAGA, target_id=str(saga.id))[:100])
    return SagaView(saga=saga, rows=rows_of(saga), steps=steps, to_come=to_come, records=domain_records(saga),
                    audit=audit)


def _took(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _attempt(body) -> int | None:
    attempt = body.get("attempt") if isinstance(body, dict) else None
    return attempt if isinstance(attempt, int) else None


def _why(body) -> str:
    if not isinstance(body, dict):
        return ""
    return ": ".join(str(part) for part in (body.get("reason"), body.get("detail")) if part)


def rows_of(saga) -> list[Row]:
    rows, sent = [], {}
    for event in saga.events.order_by("created_at", "id"):
        body = event.body if isinstance(event.body, dict) else {}
        row = Row(at=event.created_at, step=event.step, attempt=_attempt(body), what=event.kind, kind=event.kind)
        if event.kind == SagaEvent.Kind.COMMAND:
            sent[str(event.message_id)] = (event.created_at, event.message_type)
            compensating = event.message_type and _is_compensation(event.message_type)
            row.what = f"{'compensate' if compensating else 'send'} {event.message_type}"
            if body.get("deadline"):
                row.detail = f"deadline {body['deadline'][11:19]}"
        elif event.kind in (SagaEvent.Kind.REPLY, SagaEvent.Kind.LATE_REPLY, SagaEvent.Kind.STALE_REPLY):
            row.what = {"reply": "reply", "late_reply": "late reply", "stale_reply": "stale reply (ignored)"}[
                event.kind]
            row.outcome = str(body.get("outcome", ""))
            row.detail = _why(body)
            command = sent.get(str(body.get("in_reply_to")))
            if command is not None:
                row.took = _took((event.created_at - command[0]).total_seconds())
                if event.kind != SagaEvent.Kind.REPLY:
                    row.detail = f"to {command[1]}" + (f"; {row.detail}" if row.detail else "")
        elif event.kind == SagaEvent.Kind.RESEND:
            row.what = f"resent (#{body.get('resend', '?')})"
            row.detail = "deadline passed with no answer; the same command again"
        elif event.kind == SagaEvent.Kind.DEFERRED:
            row.what = "deadline put off"
            row.detail = ", ".join(f"{k} {v}" for k, v in body.items())
        elif event.kind == SagaEvent.Kind.STATUS:
            row.what = "status"
            row.outcome = str(body.get("status", ""))
            row.detail = "; ".join(f"{k}: {v}" for k, v in body.items() if k != "status" and v not in (None, ""))
        rows.append(row)
    return rows


def _is_compensation(message_type) -> bool:
    from contracts.envelope import is_compensation

    return is_compensation(message_type)


# The rows a place_order saga makes in each domain's database (read-only, for links).
def domain_records(saga) -> list[DomainRecord]:
    from workers.inventory.models import Reservation
    from workers.notifications.models import Notification
    from workers.payments.models import Payment
    from workers.shipping.models import Shipment

    records = []
    for domain, model, label in [("inventory", Reservation, "reservation"), ("payments", Payment, "payment"),
                                 ("shipping", Shipment, "shipment"), ("notifications", Notification, "notification")]:
        try:
            row = model.objects.filter(saga_id=saga.id).first()
        except Exception as exc:  # a domain's database is down: say so, show the rest
            records.append(DomainRecord(domain, f"{label}: unavailable ({type(exc).__name__})", None))
            continue
        if row is None:
            records.append(DomainRecord(domain, f"{label}: none", None))
            continue
        try:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[row.pk])
        except NoReverseMatch:
            url = None
        records.append(DomainRecord(domain, f"{label}: {row}", url))
    return records
