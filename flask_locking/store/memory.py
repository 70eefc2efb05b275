"""``memory://``: locks in this process's memory, for tests and quick experiments.

**Not shared across processes.** Two worker processes (gunicorn ``-w 2``, a forked
server, a second app server) each have their own locks, so both can hold "the" lock on one
resource; and every lock is gone when the process ends. Use a database URI for anything
served by more than one process. Within the process the store keeps the whole store
contract: one lock serialises every operation, so threads race safely.

Each ``memory://`` URI opens a new, empty store (two apps never share one by accident).
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence

from ..errors import HeldElsewhere
from ..resources import descendant_bounds
from .base import AcquireRequest, AcquireResult, EventFor, LockRow, LockStore, StoreOptions
from .eventlog import EventLog, EventRow, NewEvent

log = logging.getLogger("flask_locking")

#: Every memory store of this process, to warn in a forked child that inherited one.
_STORES: weakref.WeakSet[MemoryStore] = weakref.WeakSet()


def _warn_after_fork() -> None:
    if _STORES:
        log.warning(
            "flask-locking: a memory:// lock store was inherited by a forked process; its "
            "locks are not shared with the parent or other workers (use a database URI)."
        )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_warn_after_fork)


class MemoryStore(LockStore):
    """Lock store in a dict, for one process (see the module's warning)."""

    schemes = ("memory",)

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # Released and purged rows stay (as tombstones) so that a version never goes back.
        self._rows: dict[str, LockRow] = {}
        self._meta: dict[str, str] = {}
        self._last_ms = 0
        #: Where the operations record their events (:meth:`record_events`).
        self._events: MemoryEventLog | None = None
        _STORES.add(self)

    @classmethod
    def from_uri(cls, uri: str, options: StoreOptions) -> MemoryStore:
        log.info("flask-locking: locks are kept in this process only (%s)", uri)
        return cls()

    # -- the clock ----------------------------------------------------------------------

    def now_ms(self) -> int:
        """Epoch milliseconds that never go back (a stepped-back wall clock waits)."""
        with self._lock:
            self._last_ms = max(self._last_ms, time.time_ns() // 1_000_000)
            return self._last_ms

    # -- LockStore ----------------------------------------------------------------------

    def create_schema(self) -> None:
        pass  # nothing to create

    def record_events(self, log: EventLog) -> bool:
        """Record the events in ``log`` (when it is this store's) under the same lock as
        the change each one describes."""
        if not (isinstance(log, MemoryEventLog) and log.store is self and self.takes_events()):
            return False
        self._events = log
        return True

    def _put(self, row: LockRow, stored: LockRow, event: EventFor | None) -> None:
        """Store ``stored`` (for ``row``'s resource) and the event ``event`` makes of
        ``row``, as one step (the caller holds the lock)."""
        log = self._events
        if event is not None and log is not None:
            log.append(event(row))  # first: an event that cannot be written changes nothing
        self._rows[row.resource] = stored

    def acquire(self, request: AcquireRequest, *, event: EventFor | None = None) -> AcquireResult:
        with self._lock:
            now = self.now_ms()
            held = self._live_row(request.resource, now)
            if held is not None and held.owner_key != request.row.owner_key:
                raise HeldElsewhere(held)
            overlap = self._overlapping(request, now)
            if overlap is not None:
                raise HeldElsewhere(overlap)
            old = self._rows.get(request.resource)
            row = request.row._replace(
                locked_at_ms=now, version=1 if old is None else old.version + 1
            )
            if held is not None:
                # The owner locking again refreshes its grant (same secret and version): it
                # may strengthen the lock, never weaken it.
                row = row._replace(
                    secret=held.secret, version=held.version,
                    stealable=held.stealable and request.row.stealable,
                    infinite=held.infinite or request.infinite,
                )
            self._put(row, row, event)
            return AcquireResult(row, granted=held is None)

    def _overlapping(self, request: AcquireRequest, now: int) -> LockRow | None:
        """A live lock of anyone on another row that overlaps: infinite above, or (for an
        infinite request) anything below."""
        for key in request.ancestors:
            row = self._live_row(key, now)
            if row is not None and row.infinite:
                return row
        if request.infinite:
            low, high = descendant_bounds(request.resource)
            for row in self._rows.values():
                if low < row.resource < high and _live(row, now):
                    return row
        return None

    def live(self, resource: str) -> LockRow | None:
        with self._lock:
            return self._live_row(resource, self.now_ms())

    def live_among(self, resources: Sequence[str]) -> list[LockRow]:
        with self._lock:
            now = self.now_ms()
            found = (self._live_row(key, now) for key in dict.fromkeys(resources))
            return [row for row in found if row is not None]

    def refresh(
        self, row: LockRow, timeout_ms: int, *, event: EventFor | None = None
    ) -> LockRow | None:
        with self._lock:
            now = self.now_ms()
            if not self._is_live_grant(row, now):
                return None
            current = self._rows[row.resource]._replace(locked_at_ms=now, timeout_ms=timeout_ms)
            self._put(current, current, event)
            return current

    def release(self, row: LockRow, *, event: EventFor | None = None) -> bool:
        with self._lock:
            if not self._is_live_grant(row, self.now_ms()):
                return False
            self._put(row, _tombstone(self._rows[row.resource]), event)
            return True

    def live_rows(self, prefix: str | None = None) -> list[LockRow]:
        with self._lock:
            now = self.now_ms()
            rows = [row for row in self._rows.values() if _live(row, now)]
        if prefix is not None:
            low, high = descendant_bounds(prefix)
            rows = [row for row in rows if row.resource == prefix or low < row.resource < high]
        return sorted(rows, key=lambda row: row.resource)

    def purge_expired(self) -> int:
        return len(self.purge_expired_rows())  # (no events: the engine asks for the rows)

    def purge_expired_rows(self, *, event: EventFor | None = None) -> list[LockRow]:
        with self._lock:
            now = self.now_ms()
            wiped = [row for row in self._rows.values() if row.secret and not _live(row, now)]
            for row in wiped:
                self._put(row, _tombstone(row), event)
            return wiped

    def shared_secret(self, candidate: str) -> str:
        with self._lock:
            return self._meta.setdefault("hmac_key", candidate)

    def dispose(self) -> None:
        pass  # no connections

    def event_log(self, *, retention: float = 3600.0) -> MemoryEventLog:
        """A log of lock events in this process's memory."""
        return MemoryEventLog(self, retention=retention)

    # -- helpers --------------------------------------------------------------------------

    def _live_row(self, resource: str, now: int) -> LockRow | None:
        row = self._rows.get(resource)
        return row if row is not None and _live(row, now) else None

    def _is_live_grant(self, row: LockRow, now: int) -> bool:
        current = self._live_row(row.resource, now)
        return (
            current is not None
            and (current.version, current.secret) == (row.version, row.secret)
        )


class MemoryEventLog(EventLog):
    """Lock events in this process's memory, numbered under the store's lock."""

    def __init__(self, store: MemoryStore, *, retention: float = 3600.0) -> None:
        super().__init__(retention=retention)
        self.store = store
        self._events: list[EventRow] = []  # in id order, consecutive
        self._head = 0

    def append(self, event: NewEvent) -> int:
        with self.store._lock:
            self._head += 1
            self._events.append(EventRow(self._head, self.store.now_ms(), *event))
            new_id = self._head
        self.appended.set()
        return new_id

    def after(self, after_id: int, limit: int = 500) -> list[EventRow]:
        with self.store._lock:
            start = bisect.bisect_right(self._events, after_id, key=lambda row: row.id)
            return self._events[start:start + limit]

    def head(self) -> int:
        return self._head

    def oldest(self) -> int | None:
        with self.store._lock:
            return self._events[0].id if self._events else None

    def prune(self) -> int:
        with self.store._lock:
            cutoff = self.store.now_ms() - self.retention_ms
            keep = bisect.bisect_left(self._events, cutoff, key=lambda row: row.time_ms)
            del self._events[:keep]
            return keep


def _live(row: LockRow, now: int) -> bool:
    return bool(row.secret) and row.expires_ms > now


def _tombstone(row: LockRow) -> LockRow:
    """What stays of an ended grant: its key, version and last ``locked_at_ms``."""
    return row._replace(secret="", owner_id=None, owner_name=None, owner_url=None, timeout_ms=0)
