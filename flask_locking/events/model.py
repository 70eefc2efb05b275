"""The :class:`LockEvent` value, as streamed and as the engine records it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..lock import Lock, Owner
from ..store.base import LockRow
from ..store.eventlog import EventRow, NewEvent, event_of_row

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
        by = None if row.by_id is None else Owner(id=row.by_id, name=row.by_name)
        return cls(
            id=int(row.id), event=row.event, resource=row.lock.resource,
            version=int(row.lock.version), time=row.time_ms / 1000,
            lock=Lock.from_row(row.lock), by=by,
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
    """What the engine hands the log for ``event`` on ``lock`` (the token is not part of it,
    nor the lock's secret and owner key)."""
    owner = lock.owner
    row = LockRow(
        resource=lock.resource,
        secret="",
        owner_key="",
        owner_id=owner.id if owner else None,
        owner_name=owner.name if owner else None,
        owner_url=owner.url if owner else None,
        stealable=lock.stealable,
        infinite=lock.infinite,
        timeout_ms=max(1, round(lock.timeout * 1000)),
        locked_at_ms=round(lock.time * 1000),
        version=lock.version,
    )
    return NewEvent(event, row, by.id if by else None, by.name if by else None)


def row_event(event: str, row: LockRow, by: Owner | None = None) -> NewEvent:
    """:func:`new_event` for the lock in the store's ``row``: the same values, without
    building a :class:`Lock` to take them apart again (a store writes this inside its
    transaction)."""
    return event_of_row(event, row, by.id if by else None, by.name if by else None)
