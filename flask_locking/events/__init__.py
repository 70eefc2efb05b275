"""Live lock events: the durable log's records, the per-process hub that delivers them, and
the Server-Sent Events endpoints (see ``docs/events.rst``)."""

from __future__ import annotations

from .model import EVENTS, LockEvent

__all__ = ["EVENTS", "LockEvent"]
