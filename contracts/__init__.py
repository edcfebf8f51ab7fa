"""The message contracts: one envelope (envelope.py) and one module per participant.

The orchestrator and every worker import these; nobody keeps a second copy.
"""
from .envelope import Command, MalformedMessage, Reply, UnreadableVersion, is_compensation, message_types
from .retry import Retry

__all__ = ["Command", "Reply", "MalformedMessage", "UnreadableVersion", "Retry", "is_compensation", "message_types"]

from . import inventory, notifications, payments, shipping  # noqa: E402,F401  (registers the types)
