"""The :class:`LockEvent` value, as streamed and as the engine records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..lock import Lock, Owner
from ..store.events import EventRow, NewEvent

#: The events that are recorded and streamed (``conflict`` stays an in-process signal).
EVENTS = ("acquired", "refreshed", "released", "stolen", "expired")


@dataclass(frozen=True, slots=True)
class LockEvent:
    """One change of one lock, as every process sees it. Never carries a token."""

    id: int
    event: str
    resource: str
    version: int
    #: Epoch seconds on the database clock when the event was recorded.
    time: float
    #: The lock the event is about (the lock that ended, for released/stolen/expired).
    lock: Lock
    #: Who released or stole the lock, when known.
    by: Owner | None

    @classmethod
    def from_row(cls, row: EventRow) -> LockEvent:
        """The event stored in ``row``."""
        owner = (
            None if row.owner_id is None
            else Owner(id=row.owner_id, name=row.owner_name, url=row.owner_url)
        )
        lock = Lock(
            resource=row.resource,
            owner=owner,
            stealable=bool(row.stealable),
            timeout=row.timeout_ms / 1000,
            time=row.locked_at_ms / 1000,
            expires_at=(row.locked_at_ms + row.timeout_ms) / 1000,
            depth="infinity" if row.infinite else 0,
            version=int(row.version),
        )
        by = None if row.by_id is None else Owner(id=row.by_id, name=row.by_name)
        return cls(
            id=int(row.id), event=row.event, resource=row.resource, version=int(row.version),
            time=row.time_ms / 1000, lock=lock, by=by,
        )

    def to_json(self) -> dict[str, Any]:
        """The event's ``data`` on the wire."""
        return {
            "event": self.event,
            "resource": self.resource,
            "version": self.version,
            "time": self.time,
            "lock": self.lock.to_json(),
            "by": None if self.by is None else {"id": self.by.id, "name": self.by.name},
        }


def new_event(event: str, lock: Lock, by: Owner | None) -> NewEvent:
    """What the engine hands the log for ``event`` on ``lock`` (the token is not part of it)."""
    owner = lock.owner
    return NewEvent(
        event=event,
        resource=lock.resource,
        version=lock.version,
        owner_id=owner.id if owner else None,
        owner_name=owner.name if owner else None,
        owner_url=owner.url if owner else None,
        stealable=lock.stealable,
        infinite=lock.infinite,
        timeout_ms=max(1, round(lock.timeout * 1000)),
        locked_at_ms=round(lock.time * 1000),
        by_id=by.id if by else None,
        by_name=by.name if by else None,
    )
