"""A step's retry policy. It travels in the command so the worker that meets a transient error
knows how long to back off and when to give up; the orchestrator's definitions declare it."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from .envelope import MalformedMessage

# RabbitMQ holds a retry's delay (Celery's native delayed delivery) in whole seconds; a delay
# under one second cannot be held there, so none is shorter.
MIN_DELAY = 1.0


@dataclass(frozen=True)
class Retry:
    """Attempts in all (the first included), exponential backoff from `initial` seconds by
    `coefficient` up to `maximum`, +/- `jitter` (a fraction), and error class names never retried."""

    attempts: int = 3
    initial: float = 0.5
    coefficient: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2
    non_retryable: tuple[str, ...] = ()

    def __post_init__(self):
        if self.attempts < 1 or self.initial < 0 or self.coefficient < 1 or self.maximum < self.initial:
            raise ValueError(f"invalid retry policy {self}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"retry jitter must be within 0..1, got {self.jitter}")

    def delay(self, retries_so_far: int) -> float:
        """Seconds to wait before the next try, after `retries_so_far` retries."""
        base = min(self.initial * self.coefficient**retries_so_far, self.maximum)
        return max(MIN_DELAY, base * (1 + random.uniform(-self.jitter, self.jitter)))

    def budget(self) -> float:
        """The longest all retries can wait in total: what a deadline must leave room for."""
        return sum(
            max(MIN_DELAY, min(self.initial * self.coefficient**n, self.maximum) * (1 + self.jitter))
            for n in range(self.attempts - 1)
        )

    def retries(self, error_name: str) -> bool:
        return error_name not in self.non_retryable

    def to_dict(self) -> dict:
        return asdict(self) | {"non_retryable": list(self.non_retryable)}

    @classmethod
    def from_dict(cls, data) -> Retry:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise MalformedMessage("retry: expected an object")
        try:
            return cls(**(data | {"non_retryable": tuple(data.get("non_retryable", ()))}))
        except (TypeError, ValueError) as exc:
            raise MalformedMessage(f"retry: {exc}") from None
