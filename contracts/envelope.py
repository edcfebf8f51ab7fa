"""The command and reply envelopes (DESIGN §3), built and validated in one place."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

ENVELOPE_VERSION = 1
# "unknown": the participant could not tell whether the command had its effect (its retries ran
# out on a timeout, its database was unreachable, its handler has a bug). Never "did not happen".
OUTCOMES = ("succeeded", "failed", "unknown")
# The reasons a worker gives with an "unknown" outcome.
RETRIES_EXHAUSTED = "retries_exhausted"  # the step's own retries ran out on transient errors
INFRASTRUCTURE_UNAVAILABLE = "infrastructure_unavailable"  # our database or broker stayed unreachable
HANDLER_ERROR = "handler_error"  # a bug: the message is dead-lettered for an operator

# message type -> {payload version: {payload field: validator}}; filled by the participant modules.
# A worker reads a type's current (newest) version and the one before it, the older one upcast to
# the current shape before its handler sees it; the orchestrator writes the current version unless
# a pin says otherwise (docs/upgrading.md: the rule for changing a payload).
_PAYLOADS: dict[str, dict[int, dict]] = {}
_UPCASTS: dict[tuple[str, int], object] = {}  # (type, version) -> payload of that version -> of the next
_WRITERS: dict[tuple[str, int], object] = {}  # (type, version) -> saga context -> payload of that version
_WRITE_PINS: dict[str, int] = {}
# Message types that undo another one. Running one again is always safe, so a worker never
# answers a later copy of a compensation from its inbox when the first copy's outcome was unknown.
_COMPENSATIONS: set[str] = set()


class MalformedMessage(ValueError):
    """A message that does not match its contract. It is dead-lettered, never retried."""


class UnreadableVersion(MalformedMessage):
    """A message of a payload version this release does not read (too new, or too old)."""


def register(message_type: str, *, version: int = 1, writer=None, upcast=None, **fields):
    """Declare version `version` of a message type's payload: its fields' validators; `writer`
    builds it from a saga's context (default: the context as it is); `upcast` turns a payload of
    the version before into this one (default: the same shape)."""
    versions = _PAYLOADS.setdefault(message_type, {})
    if version in versions:
        raise ValueError(f"{message_type} v{version} is already registered")
    versions[version] = fields
    if writer is not None:
        _WRITERS[(message_type, version)] = writer
    if upcast is not None:
        _UPCASTS[(message_type, version - 1)] = upcast
    return message_type


def current_version(message_type: str) -> int:
    return max(_PAYLOADS[message_type])


def readable_versions(message_type: str) -> list[int]:
    """The current version and the one before it, those registered."""
    current = current_version(message_type)
    return [v for v in (current - 1, current) if v in _PAYLOADS[message_type]]


def write_version(message_type: str) -> int:
    return _WRITE_PINS.get(message_type) or current_version(message_type)


def pin_write_versions(pins: dict[str, int]):
    """Write these versions instead of the current ones (a release that reads a new version but
    must not write it yet: docs/upgrading.md)."""
    for message_type, version in pins.items():
        if version not in _PAYLOADS.get(message_type, {}):
            raise ValueError(f"cannot write {message_type} v{version}: not registered")
    _WRITE_PINS.clear()
    _WRITE_PINS.update(pins)


def payload_for(message_type: str, context: dict) -> tuple[int, dict]:
    """(version, payload) of a command of this type for a saga with this context."""
    version = write_version(message_type)
    writer = _WRITERS.get((message_type, version))
    return version, (writer(context) if writer else context)


def register_compensation(message_type: str, **fields):
    _COMPENSATIONS.add(message_type)
    return register(message_type, **fields)


# Commands nobody waits on (an operator's restock): handled once like any other, never answered.
_ONE_WAY: set[str] = set()


def register_one_way(message_type: str, **fields):
    _ONE_WAY.add(message_type)
    return register(message_type, **fields)


def is_one_way(message_type: str) -> bool:
    return message_type in _ONE_WAY


def is_compensation(message_type: str) -> bool:
    return message_type in _COMPENSATIONS


def message_types():
    return sorted(_PAYLOADS)


def now_iso():
    return datetime.now(timezone.utc).isoformat()


# --- field validators: each returns the value or raises MalformedMessage ----------------------
def text(value):
    if not isinstance(value, str) or not value:
        raise MalformedMessage("expected a non-empty string")
    return value


def uuid_text(value):
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise MalformedMessage("expected a UUID") from None


def money(value):
    if not isinstance(value, str):
        raise MalformedMessage("expected money as a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise MalformedMessage("expected money as a decimal string") from None
    if not amount.is_finite() or amount < 0 or amount.as_tuple().exponent < -2:
        raise MalformedMessage("expected a non-negative amount with at most two decimal places")
    return value


def positive_int(value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise MalformedMessage("expected a positive integer")
    return value


def mapping(value):
    if not isinstance(value, dict):
        raise MalformedMessage("expected an object")
    return value


def lines(value):
    if not isinstance(value, list) or not value:
        raise MalformedMessage("expected a non-empty list of lines")
    for line in value:
        mapping(line)
        text(line.get("sku"))
        positive_int(line.get("quantity"))
    return value


TRACE_KEYS = ("traceparent", "tracestate")


def trace_context(value) -> dict | None:
    """An envelope's trace context, kept only if it is what W3C trace context looks like: tracing
    is an aid, so a broken one is dropped (the message is handled), never a reason to refuse it."""
    if not isinstance(value, dict):
        return None
    kept = {key: value[key] for key in TRACE_KEYS if isinstance(value.get(key), str) and len(value[key]) <= 512}
    return kept if "traceparent" in kept else None


def _check(validator, value, where):
    try:
        return validator(value)
    except MalformedMessage as exc:
        raise MalformedMessage(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Command:
    type: str
    saga_id: str
    step: str
    payload: dict
    attempt: int = 1
    correlation_id: str = ""
    causation_id: str | None = None
    deadline: str | None = None
    # The step's retry policy for transient errors (contracts.retry.Retry as a dict).
    retry: dict | None = None
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sent_at: str = field(default_factory=now_iso)
    version: int = ENVELOPE_VERSION
    # W3C trace context (orderhub/tracing.py): {"traceparent": ..., "tracestate": ...}, or None.
    trace: dict | None = None

    def to_dict(self):
        return asdict(self)

    @property
    def retry_policy(self):
        from .retry import Retry

        return Retry.from_dict(self.retry)

    @classmethod
    def from_dict(cls, data) -> Command:
        if not isinstance(data, dict):
            raise MalformedMessage("command: expected an object")
        expected = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - expected
        missing = {"type", "saga_id", "step", "payload", "message_id", "attempt"} - set(data)
        if missing or unknown:
            raise MalformedMessage(f"command: missing {sorted(missing)} unknown {sorted(unknown)}")
        message_type = _check(text, data["type"], "type")
        if message_type not in _PAYLOADS:
            raise MalformedMessage(f"type: unknown message type {message_type!r}")
        version = _check(positive_int, data.get("version", 1), "version")
        readable = readable_versions(message_type)
        if version not in readable:
            raise UnreadableVersion(f"{message_type} v{version}: this release reads "
                                    f"{' and '.join(f'v{v}' for v in readable)}")
        payload = _check(mapping, data["payload"], "payload")
        for name, validator in _PAYLOADS[message_type][version].items():
            _check(validator, payload.get(name), f"payload.{name}")
        while version < current_version(message_type):  # the handler sees the current shape only
            upcast = _UPCASTS.get((message_type, version))
            payload = upcast(dict(payload)) if upcast else payload
            version += 1
        if data.get("retry") is not None:
            from .retry import Retry

            Retry.from_dict(data["retry"])
        return cls(
            type=message_type,
            saga_id=_check(uuid_text, data["saga_id"], "saga_id"),
            step=_check(text, data["step"], "step"),
            payload=payload,
            attempt=_check(positive_int, data["attempt"], "attempt"),
            correlation_id=str(data.get("correlation_id") or ""),
            causation_id=data.get("causation_id"),
            deadline=data.get("deadline"),
            retry=data.get("retry"),
            message_id=_check(uuid_text, data["message_id"], "message_id"),
            sent_at=str(data.get("sent_at") or ""),
            version=version,
            trace=trace_context(data.get("trace")),
        )

    # Handlers answer with these.
    def succeed(self, **data) -> Reply:
        return Reply.to(self, "succeeded", data=data)

    def fail(self, reason: str, detail: str = "", **data) -> Reply:
        return Reply.to(self, "failed", reason=reason, detail=detail, data=data)

    def unknown(self, reason: str, detail: str = "", **data) -> Reply:
        return Reply.to(self, "unknown", reason=reason, detail=detail, data=data)

    @property
    def is_compensation(self) -> bool:
        return is_compensation(self.type)


@dataclass(frozen=True)
class Reply:
    in_reply_to: str
    saga_id: str
    step: str
    attempt: int
    outcome: str
    reason: str | None = None
    detail: str = ""
    data: dict = field(default_factory=dict)
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    sent_at: str = field(default_factory=now_iso)
    version: int = ENVELOPE_VERSION
    trace: dict | None = None  # as Command.trace

    @classmethod
    def to(cls, command: Command, outcome: str, *, reason=None, detail="", data=None) -> Reply:
        return cls(
            in_reply_to=command.message_id,
            saga_id=command.saga_id,
            step=command.step,
            attempt=command.attempt,
            outcome=outcome,
            reason=reason,
            detail=detail,
            data=data or {},
        )

    @property
    def succeeded(self):
        return self.outcome == "succeeded"

    @property
    def unknown(self):
        return self.outcome == "unknown"

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data) -> Reply:
        if not isinstance(data, dict):
            raise MalformedMessage("reply: expected an object")
        expected = {f for f in cls.__dataclass_fields__}
        missing = {"in_reply_to", "saga_id", "step", "attempt", "outcome", "message_id"} - set(data)
        unknown = set(data) - expected
        if missing or unknown:
            raise MalformedMessage(f"reply: missing {sorted(missing)} unknown {sorted(unknown)}")
        if data.get("version", ENVELOPE_VERSION) != ENVELOPE_VERSION:
            raise MalformedMessage(f"version: unsupported {data.get('version')!r}")
        if data["outcome"] not in OUTCOMES:
            raise MalformedMessage(f"outcome: expected one of {OUTCOMES}")
        if data["outcome"] != "succeeded":
            _check(text, data.get("reason"), "reason")
        return cls(
            in_reply_to=_check(uuid_text, data["in_reply_to"], "in_reply_to"),
            saga_id=_check(uuid_text, data["saga_id"], "saga_id"),
            step=_check(text, data["step"], "step"),
            attempt=_check(positive_int, data["attempt"], "attempt"),
            outcome=data["outcome"],
            reason=data.get("reason"),
            detail=str(data.get("detail") or ""),
            data=_check(mapping, data.get("data") or {}, "data"),
            message_id=_check(uuid_text, data["message_id"], "message_id"),
            sent_at=str(data.get("sent_at") or ""),
            version=data.get("version", ENVELOPE_VERSION),
            trace=trace_context(data.get("trace")),
        )
