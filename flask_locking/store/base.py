"""The small interface every lock store implements, and the row it hands back.

The engine only talks to this interface; backends differ in how they make one acquisition
atomic, not in what they promise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple


class LockRow(NamedTuple):
    """One row of the lock table, as the store read it (times in database milliseconds)."""

    resource: str
    secret: str
    owner_key: str
    owner_id: str | None
    owner_name: str | None
    owner_url: str | None
    stealable: bool
    infinite: bool
    timeout_ms: int
    locked_at_ms: int
    version: int

    @property
    def expires_ms(self) -> int:
        """The database instant at which this grant stops being live."""
        return self.locked_at_ms + self.timeout_ms


class AcquireRequest(NamedTuple):
    """What an acquirer proposes; ``secret`` becomes the lock's secret only on a new grant."""

    resource: str
    ancestors: Sequence[str]
    secret: str
    owner_key: str
    owner_id: str | None
    owner_name: str | None
    owner_url: str | None
    stealable: bool
    infinite: bool
    timeout_ms: int


class AcquireResult(NamedTuple):
    """The row after a successful acquisition. ``granted`` is False when the caller already
    held the lock and the acquisition refreshed it (same secret, same version)."""

    row: LockRow
    granted: bool


class HeldElsewhere(Exception):
    """Raised by :meth:`LockStore.acquire` when a live lock of another owner overlaps."""

    def __init__(self, row: LockRow | None) -> None:
        super().__init__("resource is locked")
        self.row = row


class LockStore(ABC):
    """Persistence of locks. Every method runs in its own short transaction."""

    @abstractmethod
    def create_schema(self) -> None:
        """Create the lock tables if they are missing (safe when processes race)."""

    @abstractmethod
    def acquire(self, request: AcquireRequest) -> AcquireResult:
        """Atomically grant (or, for the same owner, refresh) a lock.

        Raises :class:`HeldElsewhere` with the overlapping live row when another owner
        holds the resource, an infinite-depth ancestor, or (for an infinite request) a
        descendant.
        """

    @abstractmethod
    def live(self, resource: str) -> LockRow | None:
        """The live row on exactly ``resource``."""

    @abstractmethod
    def live_among(self, resources: Sequence[str]) -> list[LockRow]:
        """The live rows on any of ``resources``, in one indexed query (the guard's lookup)."""

    @abstractmethod
    def refresh(self, row: LockRow, timeout_ms: int) -> LockRow | None:
        """Restart the timeout of exactly this grant; ``None`` when it is no longer live."""

    def extend(self, row: LockRow) -> LockRow | None:
        """Restart the lease of exactly this grant with its own timeout, if it is still live
        (``LOCKING_REFRESH_ON_WRITE``). Stores that can do it in one statement override this."""
        return self.refresh(row, row.timeout_ms)

    @abstractmethod
    def release(self, row: LockRow) -> bool:
        """End exactly this grant; False when it had already ended (expired, released, stolen)."""

    @abstractmethod
    def live_rows(self, prefix: str | None = None) -> list[LockRow]:
        """All live rows, or those on ``prefix`` and below it."""

    @abstractmethod
    def purge_expired(self) -> int:
        """Wipe the secret and owner of every expired lock; return how many were wiped.

        The row itself stays as a tombstone so that ``version`` never goes back.
        """

    def purge_expired_rows(self) -> list[LockRow] | None:
        """Like :meth:`purge_expired`, but return the rows (as they were before the wipe) of
        exactly the grants this call wiped; ``None`` when the store cannot tell."""
        return None

    @abstractmethod
    def shared_secret(self, candidate: str) -> str:
        """The HMAC key shared by every process: ``candidate`` if none was stored yet."""

    @abstractmethod
    def now_ms(self) -> int:
        """The database clock, in epoch milliseconds."""

    @abstractmethod
    def dispose(self) -> None:
        """Close pooled connections."""
