"""The log of lock events a store may keep, as the engine and the event hub use it.

Events are numbered 1, 2, 3, ... without gaps, and become visible in id order: a reader
that has seen id ``n`` never later finds a smaller one. Readers only ever ask "what came
after id n". A store that keeps such a log returns it from
:meth:`~flask_locking.store.LockStore.event_log`; the SSE endpoints need one
(``LOCKING_EVENTS_ENABLED``, docs/events.rst).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import NamedTuple

from .base import LockRow


class NewEvent(NamedTuple):
    """What the engine records: ``event`` on ``lock`` (the lock as it was, its ``secret``
    and ``owner_key`` left empty: a log never keeps them), and who released or stole it."""

    event: str
    lock: LockRow
    by_id: str | None
    by_name: str | None


class GrantEvent:
    """The :data:`~flask_locking.store.base.EventFor` of an acquisition: the event about
    the row it produced (that row as its lock, secret and owner key left empty), of kind
    ``granted`` when the row holds the request's ``secret`` (a new grant), else
    ``refreshed`` (the holder locking again), made by ``by_id``/``by_name``. Being data as
    well as a function, it lets a store write this same event in SQL from a row it has not
    read yet (PostgreSQL: in the statement that stamps the lease)."""

    __slots__ = ("by_id", "by_name", "granted", "refreshed", "secret")

    def __init__(
        self, secret: str, *, granted: str = "acquired", refreshed: str = "refreshed",
        by_id: str | None = None, by_name: str | None = None,
    ) -> None:
        self.secret = secret
        self.granted = granted
        self.refreshed = refreshed
        self.by_id = by_id
        self.by_name = by_name

    def __call__(self, row: LockRow) -> NewEvent:
        kind = self.granted if row.secret == self.secret else self.refreshed
        return event_of_row(kind, row, self.by_id, self.by_name)


def event_of_row(
    kind: str, row: LockRow, by_id: str | None = None, by_name: str | None = None
) -> NewEvent:
    """The event ``kind`` about the lock in the store's ``row``, as events keep a lock: no
    secret nor owner key, and an owner's name and url only with its id (a lock has no owner
    without one), flags as bools."""
    named = row.owner_id is not None
    return NewEvent(kind, LockRow(
        row.resource, "", "", row.owner_id, row.owner_name if named else None,
        row.owner_url if named else None, bool(row.stealable), bool(row.infinite),
        row.timeout_ms, row.locked_at_ms, int(row.version),
    ), by_id, by_name)


class EventRow(NamedTuple):
    """One stored event: its id, the store's clock (ms) when written, and what was recorded.
    Never holds a secret or token."""

    id: int
    time_ms: int
    event: str
    lock: LockRow
    by_id: str | None
    by_name: str | None


class EventLog(ABC):
    """Append and read lock events. Every method runs in its own short transaction."""

    def __init__(self, *, retention: float = 3600.0) -> None:
        #: How long an event stays readable (``LOCKING_EVENTS_RETENTION``), in milliseconds.
        self.retention_ms = int(retention * 1000)
        #: Set after every append from this process: an in-process reader wakes at once.
        self.appended = threading.Event()

    def create_schema(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Create what the log needs, if missing (safe when processes race). Default:
        nothing."""

    def exists(self) -> bool:
        """Whether the log's storage is there (a SQL log: its tables). Asked when the host
        creates the tables itself (``LOCKING_CREATE_TABLE = False``); default: yes."""
        return True

    @abstractmethod
    def append(self, event: NewEvent) -> int:
        """Write ``event`` with the next id and the store's clock; return its id. Set
        :attr:`appended` once it is visible."""

    @abstractmethod
    def after(self, after_id: int, limit: int = 500) -> list[EventRow]:
        """Events with an id above ``after_id``, oldest first, at most ``limit``."""

    @abstractmethod
    def head(self) -> int:
        """The id of the last event written (0 when none ever was)."""

    @abstractmethod
    def oldest(self) -> int | None:
        """The smallest retained id (``None``: nothing retained)."""

    @abstractmethod
    def prune(self) -> int:
        """Delete events older than the retention; return how many."""

    def listener(self) -> ChangeListener:
        """A blocking waiter for "something may have been appended" (default: this
        process's appends, else the poll interval)."""
        return ChangeListener(self)


class ChangeListener:
    """Waits for new events: here by the in-process signal or the poll interval."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def wait(self, timeout: float) -> None:
        """Return when an event may have been appended, or after ``timeout`` seconds."""
        self.log.appended.wait(timeout)
        self.log.appended.clear()

    def close(self) -> None:
        """Release what the listener holds."""
