"""The small interface every lock store implements, and the row it hands back.

The engine only talks to this interface; backends differ in how they make one acquisition
atomic, not in what they promise.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ..resources import ancestors

if TYPE_CHECKING:
    from .eventlog import EventLog, NewEvent


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
    """What an acquirer proposes: the row a new grant would store (the store sets its
    ``locked_at_ms`` and ``version``; its ``secret`` becomes the lock's secret only on a new
    grant), and the keys above it that an infinite lock could cover."""

    row: LockRow
    ancestors: Sequence[str]

    @classmethod
    def of(cls, row: LockRow) -> AcquireRequest:
        """The acquisition of ``row`` (a normalised key), with its ancestors."""
        return cls(row, ancestors(row.resource))

    def proposed(self) -> dict[str, Any]:
        """The row's values that the caller chooses: all but ``locked_at_ms`` and
        ``version``, which only the store sets (bind parameters of a SQL upsert)."""
        values = self.row._asdict()
        del values["locked_at_ms"], values["version"]
        return values

    @property
    def resource(self) -> str:
        return self.row.resource

    @property
    def infinite(self) -> bool:
        return self.row.infinite

    @property
    def secret(self) -> str:
        return self.row.secret

    @property
    def owner_key(self) -> str:
        return self.row.owner_key


#: What the engine hands a store that records events itself (see
#: :meth:`LockStore.record_events`): called with the row the operation produced (the grant
#: won or refreshed, or the grant that ended), inside the operation's transaction, it
#: returns the event to write there. Its content depends on the outcome (acquired or
#: refreshed, the row's version), so only the store can call it.
EventFor = Callable[[LockRow], "NewEvent"]

#: The write operations that take ``event=`` in a store that records events itself.
RECORDING_OPERATIONS = ("acquire", "refresh", "extend", "release", "purge_expired_rows")


class AcquireResult(NamedTuple):
    """The row after a successful acquisition. ``granted`` is False when the caller already
    held the lock and the acquisition refreshed it (same secret, same version)."""

    row: LockRow
    granted: bool


@dataclass(frozen=True)
class StoreOptions:
    """What the app's configuration tells a store it builds from a URI. A store takes what
    concerns it and ignores the rest."""

    #: ``LOCKING_TABLE_NAME``: a store that keeps several apps apart can key on it.
    table_name: str = "locking_locks"
    #: ``LOCKING_STORE_TIMEOUT``: seconds one operation may wait (connect, lock wait).
    timeout: float = 5.0
    #: SQL stores: the host's engine options, then ``LOCKING_ENGINE_OPTIONS``.
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    #: SQL stores: the :class:`sqlalchemy.MetaData` to define the tables on (the host's,
    #: with Flask-SQLAlchemy, so that migrations see them); ``None``: a new one.
    metadata: Any = None


class LockStore(ABC):
    """Persistence of locks. Every method runs in its own short transaction.

    A store chosen by URI declares its :attr:`schemes` and builds itself in
    :meth:`from_uri`; :func:`~flask_locking.store.register_store` makes it known
    (docs/stores.rst).
    """

    #: URI schemes this class serves (``"memory"``, ``"postgresql"``, ...). A scheme with a
    #: driver (``postgresql+psycopg``) is served by its name before the ``+`` too.
    schemes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_uri(cls, uri: str, options: StoreOptions) -> LockStore:
        """The store for ``uri`` (one of :attr:`schemes`). Stores chosen by URI override it."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a URI.")

    @classmethod  # noqa: B027 - an optional hook, not abstract: by default nothing to declare
    def define_schema(cls, options: StoreOptions, *, events: bool) -> None:
        """Declare, at ``init_app`` time, what :meth:`create_schema` will create (SQL stores
        define their tables on ``options.metadata`` for migrations). Default: nothing."""

    @abstractmethod
    def create_schema(self) -> None:
        """Create the lock tables if they are missing (safe when processes race)."""

    def record_events(self, log: EventLog) -> bool:
        """Optional capability: from now on, write the events of the write operations into
        ``log`` (a log this store made with :meth:`event_log`) inside each operation's own
        transaction; return whether the store will.

        When it answers ``True``, the engine passes ``event=`` (an :data:`EventFor`) to
        :meth:`acquire`, :meth:`refresh`, :meth:`extend`, :meth:`release` and
        :meth:`purge_expired_rows`, and the store writes ``event(row)`` in the same
        transaction as the lock change it describes: one commit, and an event exists iff its
        change committed. Default ``False``: the engine never passes ``event=`` and appends
        each event to the log after the operation, in a transaction of its own.
        """
        return False

    def takes_events(self) -> bool:
        """Whether every write operation of this store's class accepts ``event=`` (a
        subclass that overrides one of them with the older signature does not)."""
        return all(
            "event" in inspect.signature(getattr(self, name)).parameters
            for name in RECORDING_OPERATIONS
        )

    @abstractmethod
    def acquire(self, request: AcquireRequest, *, event: EventFor | None = None) -> AcquireResult:
        """Atomically grant (or, for the same owner, refresh) a lock.

        Raises :class:`HeldElsewhere` with the overlapping live row when another owner
        holds the resource, an infinite-depth ancestor, or (for an infinite request) a
        descendant. ``event``: see :meth:`record_events` (the won or refreshed row).
        """

    @abstractmethod
    def live(self, resource: str) -> LockRow | None:
        """The live row on exactly ``resource``."""

    @abstractmethod
    def live_among(self, resources: Sequence[str]) -> list[LockRow]:
        """The live rows on any of ``resources``, in one indexed query (the guard's lookup)."""

    @abstractmethod
    def refresh(
        self, row: LockRow, timeout_ms: int, *, event: EventFor | None = None
    ) -> LockRow | None:
        """Restart the timeout of exactly this grant; ``None`` when it is no longer live.
        ``event``: see :meth:`record_events` (the refreshed row)."""

    def extend(self, row: LockRow, *, event: EventFor | None = None) -> LockRow | None:
        """Restart the lease of exactly this grant with its own timeout, if it is still live
        (``LOCKING_REFRESH_ON_WRITE``). Stores that can do it in one statement override this."""
        if event is None:
            return self.refresh(row, row.timeout_ms)
        return self.refresh(row, row.timeout_ms, event=event)

    @abstractmethod
    def release(self, row: LockRow, *, event: EventFor | None = None) -> bool:
        """End exactly this grant; False when it had already ended (expired, released,
        stolen). ``event``: see :meth:`record_events` (the grant that ended: ``row``)."""

    @abstractmethod
    def live_rows(self, prefix: str | None = None) -> list[LockRow]:
        """All live rows, or those on ``prefix`` and below it."""

    @abstractmethod
    def purge_expired(self) -> int:
        """Wipe the secret and owner of every expired lock; return how many were wiped.

        The row itself stays as a tombstone so that ``version`` never goes back.
        """

    def purge_expired_rows(self, *, event: EventFor | None = None) -> list[LockRow] | None:
        """Like :meth:`purge_expired`, but return the rows (as they were before the wipe) of
        exactly the grants this call wiped; ``None`` when the store cannot tell. ``event``:
        see :meth:`record_events` (each wiped row, as it was, with its own wipe)."""
        return None

    def live_page(
        self, *, prefix: str | None, after: str | None, owner_key: str | None, limit: int
    ) -> list[LockRow]:
        """At most ``limit`` live rows on ``prefix`` or below it, owned by ``owner_key`` (when
        given), whose resource sorts after ``after``, in resource order (the lock listing).
        Stores that can ask an index override it."""
        rows = [
            row for row in self.live_rows(prefix)
            if (after is None or row.resource > after)
            and (owner_key is None or row.owner_key == owner_key)
        ]
        return rows[:limit]

    def event_log(self, *, retention: float = 3600.0) -> EventLog | None:
        """A log of lock events kept with this store (``LOCKING_EVENTS_ENABLED``), or
        ``None`` when the store keeps none (the event streams then answer 404)."""
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
