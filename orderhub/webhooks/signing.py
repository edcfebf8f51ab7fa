"""The signature on every delivery, and its check (what a receiver does; docs/api.md shows the same in a
few lines of its own).

    OrderHub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=<hex, previous secret>]
    signed = f"{t}.{event_id}.".encode() + body        (body: the raw request body)

The timestamp and the event id are inside what is signed, so a receiver can refuse an old request
(tolerance) and one it has seen (by event id), and neither can be altered without the secret."""
import hashlib
import hmac
import time

HEADER = "OrderHub-Signature"
EVENT_ID_HEADER = "OrderHub-Event-Id"
TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    pass


def digest(secret: str, timestamp: int, event_id: str, body: bytes) -> str:
    signed = f"{timestamp}.{event_id}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secrets: list[str], event_id: str, body: bytes, *, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={timestamp}", *(f"v1={digest(secret, timestamp, event_id, body)}" for secret in secrets)])


def verify(secret: str, header: str, event_id: str, body: bytes, *, tolerance=TOLERANCE_SECONDS, now=None) -> int:
    """The signed timestamp when `header` signs (event_id, body) with `secret` within `tolerance`
    seconds of now; SignatureError otherwise."""
    parts = [part.split("=", 1) for part in (header or "").split(",") if "=" in part]
    stamps = [value for key, value in parts if key.strip() == "t"]
    signatures = [value.strip() for key, value in parts if key.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not signatures:
        raise SignatureError("no t= and v1= in the signature header")
    timestamp = int(stamps[0])
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance: a replay, or a clock far off")
    expected = digest(secret, timestamp, event_id, body)
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise SignatureError("no signature matches")
    return timestamp
