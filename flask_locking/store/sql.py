"""The SQLAlchemy Core store shared by every backend.

A backend subclass supplies the database clock expression, the atomic upsert, and how a
multi-statement acquisition is serialised against overlapping (infinite-depth) locks. All
statements are built once with bind parameters, so SQLAlchemy compiles each of them once.
The hot operations (acquire, refresh, release, the guard's lookup) run them on the driver
connection (:mod:`flask_locking.store.driver`); the cold ones go through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import inspect
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import bindparam, exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex, CreateTable

from ..errors import HeldElsewhere, LockingError, StoreUnavailable
from ..resources import descendant_bounds
from .base import AcquireRequest, AcquireResult, EventFor, LockRow, LockStore, StoreOptions
from .driver import Compiled, Session, checkout_failure, driver_failure, first
from .events import EventLog, SQLEventLog
from .keeper import ConnectionKeeper
from .schema import event_head_table, event_table, lock_table, meta_table
from .sql_engine import engine_for_uri

#: A released or purged row stays as a tombstone holding only its key, version and last
#: ``locked_at_ms``: the values a release, a purge and a purge's wipe set.
TOMBSTONE: dict[str, Any] = {
    "secret": "", "owner_id": None, "owner_name": None, "owner_url": None, "timeout_ms": 0
}

#: :meth:`SQLStore.turns` of a store whose operations need not take turns (reusable).
_NO_TURNS: contextlib.nullcontext[None] = contextlib.nullcontext()

#: Errors that mean "the database is not there or did not answer".
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError)


class SQLStore(LockStore):
    """Lock store over a SQLAlchemy :class:`~sqlalchemy.engine.Engine`."""

    #: SQLAlchemy dialect names this class serves (see :func:`flask_locking.store.create_store`).
    dialect_names: ClassVar[tuple[str, ...]] = ()
    #: How many times an acquisition is retried after a deadlock / serialisation error.
    max_retries: ClassVar[int] = 8
    #: Seconds an acquisition keeps retrying (``LOCKING_STORE_TIMEOUT``): each attempt may
    #: itself wait up to the lock timeout, so without a budget the retries would multiply it.
    retry_budget: float = 5.0
    #: Whether a lone read may run straight on a kept connection's cursor, without the
    #: operation around it (:meth:`read_rows`): only where a read needs nothing from
    #: :meth:`begin_operation` / :meth:`end_operation` and leaves no transaction open.
    reads_alone: bool = False

    def __init__(
        self, engine: Engine, metadata: sa.MetaData, table_name: str, *, timeout: float = 5.0
    ) -> None:
        self.engine = engine
        self.retry_budget = timeout
        self._compiled: dict[int, tuple[sa.Executable, Compiled]] = {}
        #: Idle connections kept between hot operations (see :mod:`.keeper`).
        self.keeper = ConnectionKeeper(engine, self.connection_is_idle)
        #: Where the write operations record their events (:meth:`record_events`).
        self._events: SQLEventLog | None = None
        self.table = lock_table(metadata, table_name)
        self.meta = meta_table(metadata, table_name)
        self._build_statements()

    # -- building ----------------------------------------------------------------------

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "schemes" not in cls.__dict__:
            # A SQL store serves the URL schemes of its SQLAlchemy dialects.
            cls.schemes = cls.dialect_names

    @classmethod
    def from_uri(cls, uri: str, options: StoreOptions) -> SQLStore:
        """A store with an engine of its own on the database at ``uri`` (a SQLAlchemy URL),
        of this class, or (called on :class:`SQLStore`) of the class serving the engine's
        dialect. Lock statements never run in the host's session, even on its database."""
        from . import create_store  # the package maps dialects to classes

        engine = engine_for_uri(
            uri, timeout=options.timeout, options=dict(options.engine_options)
        )
        try:
            if engine.dialect.name not in cls.dialect_names:
                return create_store(
                    engine, metadata=options.metadata, table_name=options.table_name,
                    timeout=options.timeout,
                )
            metadata = options.metadata if options.metadata is not None else sa.MetaData()
            return cls(engine, metadata, options.table_name, timeout=options.timeout)
        except BaseException:
            engine.dispose()
            raise

    @classmethod
    def define_schema(cls, options: StoreOptions, *, events: bool) -> None:
        """Define the tables on ``options.metadata`` now, so that Flask-Migrate / Alembic
        autogenerate see them before any lock is taken."""
        if options.metadata is None:
            return
        lock_table(options.metadata, options.table_name)
        meta_table(options.metadata, options.table_name)
        if events:
            event_table(options.metadata, options.table_name)
            event_head_table(options.metadata, options.table_name)

    # -- backend hooks ---------------------------------------------------------------

    def now_expression(self) -> sa.ColumnElement[int]:
        """SQL for the database clock in integer epoch milliseconds (one instant per statement)."""
        raise NotImplementedError

    def build_upsert(self) -> sa.Executable:
        """The single atomic acquisition statement (see subclasses)."""
        raise NotImplementedError

    def run_upsert(self, conn: Session, params: dict[str, Any]) -> LockRow | None:
        """Execute the upsert; return the row when the caller won (or refreshed its own)."""
        raise NotImplementedError

    #: Whether the store has :meth:`acquire_at_once`.
    acquires_at_once: ClassVar[bool] = False

    def acquire_at_once(
        self, conn: Session, request: AcquireRequest, event: EventFor | None = None
    ) -> LockRow | None:
        """The common acquisition in one statement or one round trip: the won row; or
        :class:`HeldElsewhere` when another owner's live grant holds the row itself (see
        :meth:`refused_by`); or ``None`` (an overlap, or anything unusual), which sends the
        acquisition down the general path. Losing leaves nothing behind (rolled back).
        A won row's ``event`` is written in the same transaction (:meth:`record`)."""
        return None

    def at_once_operation(self, recording: bool) -> contextlib.AbstractContextManager[Session]:
        """The operation of a write that is one statement alone (:meth:`acquire_at_once`, a
        release, a purge's wipe; ``recording``: it writes an event too): one autocommitted
        statement, or :meth:`recording_operation`."""
        return self.recording_operation() if recording else self.operation()

    def recording_operation(self) -> contextlib.AbstractContextManager[Session]:
        """A write transaction whose first statements run in :meth:`batch`: a refresh, or
        a write that is one autocommitted statement alone (an acquisition at once, a
        release, a purge's wipe) when its event is written with it. PostgreSQL:
        autocommit, and :meth:`batch` sends ``BEGIN`` with the first statements."""
        return self.operation(write=True)

    def refused_by(self, found: Any, request: AcquireRequest) -> None:
        """Raise :class:`HeldElsewhere` when ``found`` (a row of ``_select_holder``, read
        after the acquisition lost) is another owner's grant live at that read: the loss
        is then decided, at that instant, without the general path."""
        if found is None:
            return
        holder = _one(found[:-1])
        live = bool(holder.secret) and holder.expires_ms > found[-1]
        if live and holder.owner_key != request.owner_key:
            raise HeldElsewhere(holder)

    def serialize_hierarchy(self, conn: Session, request: AcquireRequest) -> None:
        """Make overlapping acquisitions on different rows wait for each other (default: the
        write transaction already does)."""

    def start_lease(self, conn: Session, row: LockRow) -> LockRow:
        """Start the lease of the grant just won at the database clock **now**.

        The upsert read the clock when its statement began, and may then have waited for
        the row (or, on MySQL, for the rows the overlap check reads) behind another
        transaction: a lease starting at that reading could be over before it is granted.
        Re-stamped here, in the same transaction and under the row lock it already holds,
        it starts after every wait. SQLite waits before its first statement and skips it.
        """
        params = _grant(row)
        if self._update_returns:
            return _one(conn.first(self._start_lease, params))
        conn.run(self._start_lease, params)
        return _one(conn.first(self._select_row, {"resource": row.resource}))

    def wait_for_row(self, conn: Session, resource: str) -> None:
        """Take the row's lock before a statement that reads the clock, so that its reading
        (and the decision made with it) comes after any wait for the row. SQLite waited in
        ``BEGIN IMMEDIATE`` already."""
        # (run, not read: in a batch() block its rows come later; nobody needs them)
        conn.run(self._lock_row, {"grant_resource": resource})

    def lock_overlap_check(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        """Adjust the overlap query (MySQL makes it a locking read)."""
        return stmt

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        """A transaction for a multi-statement write (SQLite: ``BEGIN IMMEDIATE``)."""
        with self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def single_statement(self) -> Iterator[Connection]:
        """A connection for one statement that needs no surrounding transaction."""
        with self.engine.connect() as conn:
            yield conn
            conn.commit()

    def operation(self, *, write: bool = False) -> contextlib.AbstractContextManager[Session]:
        """A hot operation on a pooled driver connection, committed at the end: a write
        transaction when ``write`` (:meth:`begin_operation`), else single statements."""
        return _Operation(self, write)

    def turns(self) -> contextlib.AbstractContextManager[Any]:
        """What operations of this process take turns on (SQLite in memory: its one
        connection); default: nothing."""
        return _NO_TURNS

    def connection_is_idle(self, dbapi_connection: Any) -> bool:
        """Whether ``dbapi_connection`` has no transaction open, so that it may be kept for
        the next operation (default: unknown, so never kept)."""
        return False

    def begin_operation(self, session: Session, write: bool) -> None:
        """Open the operation (default: the driver begins a transaction by itself)."""

    def end_operation(self, session: Session, write: bool) -> None:
        """Undo what :meth:`begin_operation` set on the connection before it goes back."""

    def driver(self, statement: sa.Executable) -> Compiled:
        """``statement`` compiled for the driver, once per store (statements are built once
        and live as long as the store, so their identity is the key)."""
        found = self._compiled.get(id(statement))
        if found is None:
            found = (statement, Compiled(statement, self.engine.dialect))
            self._compiled[id(statement)] = found
        return found[1]

    def is_retryable(self, error: exc.DBAPIError) -> bool:
        """Deadlocks and serialisation failures that a retry resolves."""
        return False

    def is_missing_table(self, error: exc.DBAPIError) -> bool:
        """The statement failed because a table of the store is not there (dropped under a
        running app, or never created with ``LOCKING_CREATE_TABLE`` off): the store is
        unavailable until it is back, like a database that cannot be reached. (SQLite's
        "no such table" is an ``OperationalError``, unavailable already.)"""
        return False

    def record_events(self, log: EventLog) -> bool:
        """Write the events into ``log`` in each operation's own transaction, when ``log``
        is this store's (:meth:`event_log`) and no subclass overrode an operation with the
        signature that has no ``event`` (see :meth:`LockStore.record_events`)."""
        if not (isinstance(log, SQLEventLog) and log.store is self and self.takes_events()):
            return False
        self._events = log
        return True

    def batch(self, conn: Session) -> contextlib.AbstractContextManager[Any]:
        """The first statements of a :meth:`recording_operation`, run in this block and
        read after it: PostgreSQL sends them with the transaction's ``BEGIN``, in one
        driver call (:meth:`~flask_locking.store.driver.Session.together`). Default: each
        is sent when run."""
        return contextlib.nullcontext()

    def takes_events(self) -> bool:
        # The one-statement acquisition records the event too: an override of it written
        # before ``event`` existed would drop it (the engine then appends after the call).
        return super().takes_events() and (
            not self.acquires_at_once
            or "event" in inspect.signature(self.acquire_at_once).parameters
        )

    def records(self, event: EventFor | None) -> bool:
        """Whether an operation given ``event`` writes an event (the store has a log)."""
        return event is not None and self._events is not None

    def record(self, conn: Session, event: EventFor | None, row: LockRow) -> None:
        """Write the event ``event`` builds from ``row`` as the last step of ``conn``'s
        write transaction (PostgreSQL commits it then, in the same round trip); nothing
        when there is no event to write."""
        if event is not None and self._events is not None:
            self._events.write(conn, event(row))

    def recorded(self, event: EventFor | None) -> None:
        """After the commit: wake this process's readers of the event log (signals,
        NOTIFY and wakeups only ever follow the commit)."""
        if event is not None and self._events is not None:
            self._events.committed()

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        """``INSERT`` that does nothing when the key exists."""
        raise NotImplementedError

    # -- statements --------------------------------------------------------------------

    def _build_statements(self) -> None:
        t = self.table
        now = self.now_expression()
        live = live_at(t, now)
        self._select_live_one = sa.select(t).where(t.c.resource == bindparam("resource"), live)
        self._select_row = sa.select(t).where(t.c.resource == bindparam("resource"))
        self._live = live
        self._live_among_by_count: dict[int, sa.Select[Any]] = {}
        self._overlap_by_shape: dict[tuple[int, bool], sa.Select[Any]] = {}
        # (bind names differ from column names: UPDATE reserves those for its SET clause)
        grant = sa.and_(
            t.c.resource == bindparam("grant_resource"),
            t.c.version == bindparam("grant_version"),
            t.c.secret == bindparam("grant_secret"),
            live,
        )
        refresh = (
            sa.update(t)
            .where(grant)
            .values(locked_at_ms=now, timeout_ms=bindparam("new_timeout_ms"))
        )
        # RETURNING where the database has it for UPDATE (not MariaDB: read back instead).
        self._update_returns = bool(self.engine.dialect.update_returning)
        self._refresh = refresh.returning(*t.c) if self._update_returns else refresh
        # (the row lock is ours: the grant's identity in the WHERE is a guard, not a race)
        start_lease = sa.update(t).where(
            t.c.resource == bindparam("grant_resource"),
            t.c.version == bindparam("grant_version"),
            t.c.secret == bindparam("grant_secret"),
        ).values(locked_at_ms=now)
        self._start_lease = start_lease.returning(*t.c) if self._update_returns else start_lease
        self._lock_row = (
            sa.select(t.c.resource)
            .where(t.c.resource == bindparam("grant_resource"))
            .with_for_update()
        )
        self._select_holder = sa.select(t, now.label("now")).where(
            t.c.resource == bindparam("resource")
        )
        self._release = sa.update(t).where(grant).values(**TOMBSTONE)
        self._purge = sa.update(t).where(expired_at(t, now)).values(**TOMBSTONE)
        self._select_expired = sa.select(t).where(expired_at(t, now))
        # Wipe each grant with its whole identity in the WHERE: a grant re-acquired (new
        # version and secret) or wiped by a concurrent purge in between is not reported.
        self._wipe = sa.update(t).where(
            expired_at(t, now),
            t.c.resource == bindparam("grant_resource"),
            t.c.version == bindparam("grant_version"),
            t.c.secret == bindparam("grant_secret"),
        ).values(**TOMBSTONE)
        self._select_now = sa.select(now.label("now"))
        self._upsert = self.build_upsert()
        m = self.meta
        self._select_meta = sa.select(m.c.value).where(m.c.name == bindparam("name"))
        self._insert_meta = self.insert_ignore(m).values(
            name=bindparam("name"), value=bindparam("value"), schema_version=1
        )
        #: What :func:`flask_locking.writes.hold` runs (built once, so compiled once).
        self.hold_row = self.hold_statement()

    # -- LockStore --------------------------------------------------------------------

    def create_schema(self) -> None:
        for table in (self.table, self.meta):
            connected = False
            try:
                with self.engine.begin() as conn:
                    connected = True
                    conn.execute(CreateTable(table, if_not_exists=True))
                    for index in table.indexes:
                        conn.execute(CreateIndex(index, if_not_exists=True))
            except exc.DBAPIError as error:
                # Several processes starting at once: PostgreSQL can report the loser of two
                # concurrent "CREATE TABLE IF NOT EXISTS" as a duplicate; the table is there.
                # Not asked when no connection could be made: a second attempt on a server
                # that is down would make the request wait out the connect timeout twice.
                try:
                    exists = connected and sa.inspect(self.engine).has_table(table.name)
                except exc.DBAPIError:
                    exists = False  # the server went away meanwhile
                if not exists:
                    raise self._unavailable(error) from error

    def acquire(self, request: AcquireRequest, *, event: EventFor | None = None) -> AcquireResult:
        if self.acquires_at_once:
            try:
                with self._translated(), self.at_once_operation(self.records(event)) as conn:
                    # (a host's override may predate ``event``: it only gets one to record)
                    won = (self.acquire_at_once(conn, request, event)
                           if self.records(event) else self.acquire_at_once(conn, request))
            except _Retry:
                won = None  # (a deadlock: the general path retries)
            if won is not None:
                self.recorded(event)
                return AcquireResult(won, granted=won.secret == request.secret)
        params = request.proposed()
        deadline = time.monotonic() + self.retry_budget
        for attempt in range(self.max_retries + 1):
            try:
                with self._translated(), self.operation(write=True) as conn:
                    self.serialize_hierarchy(conn, request)
                    row = self.run_upsert(conn, params)
                    if row is None:
                        row = self._decide_again(conn, params)
                    # MySQL: the locking read waits for, then locks, the rows it reads.
                    overlap, row = self.overlap_then_lease(conn, request, row)
                    # That check used the upsert's clock, from before any wait: a lock above
                    # found live then may have ended by the grant's instant. Look again at
                    # it. Each round drops a lock for good (it is over, and its row is held:
                    # MySQL's share lock, PostgreSQL's advisory lock), so the rounds end.
                    while overlap is not None and overlap.expires_ms <= row.locked_at_ms:
                        overlap, row = self.overlap_then_lease(conn, request, row)
                    if overlap is not None:
                        raise HeldElsewhere(overlap)  # rolls the upsert back
                    self.record(conn, event, row)
                self.recorded(event)
                return AcquireResult(row, granted=row.secret == request.secret)
            except _Retry:
                if time.monotonic() >= deadline:
                    break
                time.sleep(random.uniform(0.001, 0.005) * (attempt + 1))
        raise StoreUnavailable("The lock store stayed busy; try again.")

    def _decide_again(self, conn: Session, params: dict[str, Any]) -> LockRow:
        """The upsert lost: return the row if it was lost only to a clock read before the
        wait for the row, else raise :class:`HeldElsewhere` with the holder.

        The upsert decided "still held" at the clock it read before waiting; when the
        holder's lease ended during that wait, the decision is taken again at the clock
        after it (the row is locked by now, so the second upsert does not wait).
        """
        found = conn.first(self._select_holder, {"resource": params["resource"]})
        holder = None if found is None else _one(found[:-1])
        if found is not None and holder is not None and (
            not holder.secret or holder.expires_ms <= found[-1]
        ):
            row = self.run_upsert(conn, params)
            if row is not None:
                return row
            holder = _row(conn.first(self._select_row, {"resource": params["resource"]}))
        raise HeldElsewhere(holder)

    def overlap_then_lease(
        self, conn: Session, request: AcquireRequest, row: LockRow
    ) -> tuple[LockRow | None, LockRow]:
        """The first lock overlapping ``request`` that is live at ``row.locked_at_ms`` (MySQL:
        a locking read, which waits for the rows it reads), then the grant ``row`` with its
        lease started after any wait of that read (:meth:`start_lease`)."""
        overlap = self._overlapping(conn, request, row.locked_at_ms)
        return overlap, self.start_lease(conn, row)

    def _overlapping(self, conn: Session, request: AcquireRequest, now: int) -> LockRow | None:
        check = self._overlap_check(request, now)
        if check is None:
            return None
        compiled, params = check
        return _row(first(conn.execute(compiled.sql, compiled.bind(params))))

    def _overlap_check(
        self, request: AcquireRequest, now: int
    ) -> tuple[Compiled, dict[str, Any]] | None:
        """The overlap query of ``request`` at ``now`` with its parameters, or ``None`` when
        nothing can overlap (no ancestor, and nothing below counts)."""
        # As in live_among: one statement per number of ancestors, with plain binds.
        ancestors = list(request.ancestors)
        if not ancestors and not request.infinite:
            return None
        stmt, kept = _shaped(self._overlap_by_shape, (len(ancestors), request.infinite),
                             lambda: self._overlap_statement(len(ancestors), request.infinite))
        params = {"now": now, **overlap_params(request)}
        return (self.driver(stmt) if kept else Compiled(stmt, self.engine.dialect)), params

    def _overlap_statement(self, count: int, infinite: bool) -> sa.Select[Any]:
        """The first overlap (see :func:`overlap_at`) live at the bind ``now``."""
        t = self.table
        where = overlap_at(t, count, infinite, bindparam("now", type_=sa.BigInteger))
        return self.lock_overlap_check(sa.select(t).where(where).limit(1))

    def live(self, resource: str) -> LockRow | None:
        rows = self.read_rows(self._select_live_one, {"resource": resource})
        return _one(rows[0]) if rows else None

    def live_among(self, resources: Sequence[str]) -> list[LockRow]:
        # One statement per number of keys, with plain binds (this is the guard's
        # per-request query).
        t = self.table
        count = len(resources)
        if not count:
            return []
        stmt, kept = _shaped(self._live_among_by_count, count, lambda: sa.select(t).where(
            t.c.resource.in_([bindparam(f"k{i}") for i in range(count)]), self._live
        ))
        params = {f"k{i}": key for i, key in enumerate(resources)}
        return [_one(r) for r in self.read_rows(stmt, params, once=not kept)]

    def read_rows(
        self, statement: sa.Executable, params: Mapping[str, Any], *, once: bool = False
    ) -> list[Any]:
        """Every row of one read-only ``statement`` (driver tuples), in no transaction of its
        caller's (MariaDB: its own, whose ``COMMIT`` goes with it): the guard's lookup and
        every lock read.

        Where the store allows it (:attr:`reads_alone`) and no engine listener watches
        statements, straight on a kept connection's cursor: a lone read in autocommit mode
        leaves nothing to commit, so the operation's session, hooks and commit would be
        pure cost, paid by every guarded request. Else as an :meth:`operation`.
        """
        compiled = Compiled(statement, self.engine.dialect) if once else self.driver(statement)
        dispatch = self.engine.dispatch
        if not self.reads_alone or dispatch.before_cursor_execute or (
            dispatch.after_cursor_execute
        ):
            with self._translated(), self.operation() as conn:
                # (MariaDB: the read's COMMIT in the same round trip)
                read = conn.run_together([(compiled, params)], commit=True)
                return list(read[0].fetchall())
        keeper = self.keeper
        with self._translated():
            try:
                connection = keeper.checkout()
            except self.engine.dialect.loaded_dbapi.Error as error:
                raise checkout_failure(self.engine, error) from error
            cursor = None
            bound = compiled.bind(params)
            try:
                cursor = connection.dbapi_connection.cursor()
                cursor.execute(compiled.sql, bound)
                return list(cursor.fetchall())
            except self.engine.dialect.loaded_dbapi.Error as error:
                raise driver_failure(
                    self.engine, connection, cursor, error, compiled.sql, bound
                ) from error
            finally:
                try:
                    if cursor is not None:
                        cursor.close()
                finally:
                    keeper.checkin(connection)  # back to the pool if a transaction is open

    def refresh(
        self, row: LockRow, timeout_ms: int, *, event: EventFor | None = None
    ) -> LockRow | None:
        params = {**_grant(row), "new_timeout_ms": timeout_ms}
        recording = self.records(event)
        # A write transaction (PostgreSQL: its BEGIN sent with the first statements, in one
        # round trip, see batch()).
        with self._translated(), self.recording_operation() as conn:
            refreshed = self.refresh_grant(conn, row, params, commit=not recording)
            if refreshed is not None:
                self.record(conn, event, refreshed)
        if refreshed is not None:
            self.recorded(event)
        return refreshed

    def refresh_grant(
        self, conn: Session, row: LockRow, params: dict[str, Any], *, commit: bool
    ) -> LockRow | None:
        """Restart the lease of the grant ``row`` (``params``: its identity and the new
        timeout); return the refreshed row, or ``None`` when that grant is not live.
        ``commit``: nothing follows in the transaction, so its ``COMMIT`` may go with the
        last statement (a refresh that matched nothing changed nothing)."""
        with self.batch(conn):
            # Any wait for the row happens here, before the UPDATE reads the clock: a lease
            # that ran out meanwhile is not revived, and a refreshed one starts after it.
            self.wait_for_row(conn, row.resource)
            updated = conn.run(self._refresh, params)
        # The UPDATE compares this grant's secret and version, so it can never touch a
        # later holder's lock; a read-back runs under the write lock just taken.
        if self._update_returns:
            return _row(first(updated))
        if updated.rowcount == 0:
            return None
        return _row(conn.first(self._select_row, {"resource": row.resource}))

    # extend() is LockStore's: refresh() with the grant's own timeout. Not one autocommit
    # UPDATE: one that waited for a row that was only locked (hold()'s FOR SHARE) would have
    # checked liveness and stamped the lease at the clock before the wait (PostgreSQL does
    # not re-check the WHERE of a row that was not modified meanwhile).

    def hold_statement(self) -> sa.Executable:
        """The statement :func:`flask_locking.writes.hold` runs in the host's own
        transaction: the live row of one grant (binds ``hold_resource`` and ``hold_version``),
        locked in share mode (PostgreSQL ``FOR SHARE``, MySQL/MariaDB ``LOCK IN SHARE MODE``) until
        that transaction ends, so every acquisition, refresh, release or purge of the row
        waits for it."""
        t = self.table
        return (
            sa.select(t)
            .where(
                t.c.resource == bindparam("hold_resource"),
                t.c.version == bindparam("hold_version"),
                self._live,
            )
            .with_for_update(read=True)
        )

    def release(self, row: LockRow, *, event: EventFor | None = None) -> bool:
        params = _grant(row)
        # One autocommitted UPDATE; a transaction only when an event is written with it.
        recording = self.records(event)
        with self._translated(), self.at_once_operation(recording) as conn:
            if recording:
                with self.batch(conn):
                    cursor = conn.run(self._release, params)
            else:  # (MariaDB: its COMMIT in the same round trip)
                cursor = conn.run_together([(self._release, params)], commit=True)[0]
            released = int(cursor.rowcount) > 0  # (see _matched)
            if released:
                self.record(conn, event, row)
        if released:
            self.recorded(event)
        return released

    def live_rows(self, prefix: str | None = None) -> list[LockRow]:
        t = self.table
        stmt = sa.select(t).where(live_at(t, self.now_expression()))
        if prefix is not None:
            low, high = descendant_bounds(prefix)
            stmt = stmt.where(
                sa.or_(t.c.resource == prefix, sa.and_(t.c.resource > low, t.c.resource < high))
            )
        stmt = stmt.order_by(t.c.resource)
        with self._translated(), self.single_statement() as conn:
            return [LockRow(*r) for r in conn.execute(stmt)]

    def purge_expired(self) -> int:
        with self._translated(), self.single_statement() as conn:
            return _matched(conn.execute(self._purge))

    def purge_expired_rows(self, *, event: EventFor | None = None) -> list[LockRow]:
        with self._translated(), self.single_statement() as conn:
            candidates = [LockRow(*r) for r in conn.execute(self._select_expired)]
        wiped: list[LockRow] = []
        recording = self.records(event)
        for row in candidates:
            # Each wipe commits alone (with its event, when one is written).
            with self._translated(), self.at_once_operation(recording) as session:
                with self.batch(session) if recording else contextlib.nullcontext():
                    cursor = session.run(self._wipe, _grant(row))
                if int(cursor.rowcount) > 0:  # (see _matched)
                    wiped.append(row)
                    self.record(session, event, row)
        if wiped:
            self.recorded(event)
        return wiped

    def shared_secret(self, candidate: str) -> str:
        with self._translated(), self.write_transaction() as conn:
            conn.execute(self._insert_meta, {"name": "hmac_key", "value": candidate})
            value = conn.execute(self._select_meta, {"name": "hmac_key"}).scalar_one()
            return str(value)

    def now_ms(self) -> int:
        with self._translated(), self.single_statement() as conn:
            return int(conn.execute(self._select_now).scalar_one())

    def dispose(self) -> None:
        self.keeper.close()
        self.engine.dispose()

    def event_log(self, *, retention: float = 3600.0) -> EventLog:
        """The log of lock events kept beside this store's lock table."""
        return SQLEventLog(self, retention=retention)

    def live_page(
        self, *, prefix: str | None, after: str | None, owner_key: str | None, limit: int
    ) -> list[LockRow]:
        from .listing import live_page  # one indexed range query

        return live_page(self, prefix=prefix, after=after, owner_key=owner_key, limit=limit)

    # -- errors ------------------------------------------------------------------------

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        """Turn driver errors into :class:`StoreUnavailable` (or a retry signal)."""
        return _Translated(self)

    @staticmethod
    def _unavailable(error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"The lock store is unavailable ({type(error).__name__}).")


def live_at(t: sa.FromClause, now: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The row holds a grant that is live at ``now``.

    A released or purged row keeps its key, version and last ``locked_at_ms`` (the version
    must never go back); its empty secret alone says "no grant", so the row stays free
    even when the database clock steps back behind ``locked_at_ms``.
    """
    return sa.and_(t.c.secret != "", (t.c.locked_at_ms + t.c.timeout_ms) > now)


def overlap_at(
    t: sa.FromClause, count: int, infinite: bool, now: sa.ColumnElement[Any]
) -> sa.ColumnElement[bool]:
    """A lock live at ``now`` that a request's own row cannot see: an infinite lock on one
    of ``count`` ancestors (binds ``a0``, ``a1``...) and, for an infinite request, any lock
    below it (binds ``low`` and ``high``: see
    :func:`~flask_locking.resources.descendant_bounds`)."""
    keys: list[sa.BindParameter[Any]] = [bindparam(f"a{i}") for i in range(count)]
    above = sa.and_(t.c.resource.in_(keys), t.c.infinite) if count else sa.false()
    if infinite:
        below = sa.and_(t.c.resource > bindparam("low"), t.c.resource < bindparam("high"))
        above = sa.or_(above, below)
    return sa.and_(live_at(t, now), above)


def overlap_params(request: AcquireRequest) -> dict[str, Any]:
    """The binds of :func:`overlap_at` for ``request``."""
    params: dict[str, Any] = {f"a{i}": key for i, key in enumerate(request.ancestors)}
    if request.infinite:
        params["low"], params["high"] = descendant_bounds(request.resource)
    return params


def expired_at(t: sa.Table, now: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The row still holds a grant (not released nor wiped) whose lease ended by ``now``:
    what a purge wipes."""
    return sa.and_((t.c.locked_at_ms + t.c.timeout_ms) <= now, t.c.secret != "")


def ended_at(t: sa.Table, now: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """The row holds no grant live at ``now`` (released, purged, or expired): exactly
    ``not live_at``, spelled without NOT so the databases can use it in upserts."""
    return sa.or_(t.c.secret == "", (t.c.locked_at_ms + t.c.timeout_ms) <= now)


class _Retry(StoreUnavailable):
    """Internal: the acquisition hit a deadlock or serialisation failure; run it again.

    Outside the acquisition's retry loop (a release or refresh that waited out the lock
    timeout behind a held row, see :meth:`SQLStore.hold_statement`) it is what it says: the
    store stayed busy."""

    def __init__(self) -> None:
        super().__init__("The lock store stayed busy; try again.")


def _shaped(cache: dict[Any, Any], shape: Any, build: Callable[[], Any]) -> tuple[Any, bool]:
    """The statement for ``shape`` (a count of keys, or a tuple starting with one) from
    ``cache``, built on a miss; kept only for up to 64 keys, so the cache stays small.
    Returns the statement and whether it is kept (else it is compiled for one use)."""
    stmt = cache.get(shape)
    if stmt is not None:
        return stmt, True
    count = shape[0] if isinstance(shape, tuple) else shape
    if count > 64:
        return build(), False
    return cache.setdefault(shape, build()), True


def _row(raw: Any) -> LockRow | None:
    return None if raw is None else _one(raw)


def _one(raw: Any) -> LockRow:
    """A driver row as a :class:`LockRow` (SQLite and MySQL return booleans as integers)."""
    (resource, secret, owner_key, owner_id, owner_name, owner_url, stealable, infinite,
     timeout_ms, locked_at_ms, version) = raw
    return LockRow(resource, secret, owner_key, owner_id, owner_name, owner_url,
                   bool(stealable), bool(infinite), timeout_ms, locked_at_ms, version)


def _grant(row: LockRow) -> dict[str, Any]:
    return {
        "grant_resource": row.resource, "grant_version": row.version, "grant_secret": row.secret
    }


def _matched(result: sa.CursorResult[Any]) -> int:
    # For UPDATE, rowcount is the number of rows whose WHERE matched on every backend here
    # (MySQL drivers set CLIENT.FOUND_ROWS). Every UPDATE above puts the whole condition in
    # its WHERE, so a match is the decision itself, not a hint from an earlier read.
    return int(result.rowcount)


class _Operation:
    """:meth:`SQLStore.operation`: a class rather than a generator, because every lock
    operation and every guarded request enters one (a generator-based context manager
    costs a frame and a generator object more)."""

    __slots__ = ("session", "store", "turns", "write")

    def __init__(self, store: SQLStore, write: bool) -> None:
        self.store = store
        self.write = write

    def __enter__(self) -> Session:
        store = self.store
        self.turns = turns = store.turns()
        turns.__enter__()
        try:
            keeper = store.keeper
            self.session = session = Session(
                store.engine, store.driver, keeper.checkout, keeper.checkin
            )
            try:
                store.begin_operation(session, self.write)
            except BaseException:
                try:
                    session.abort()
                    store.end_operation(session, self.write)
                finally:
                    session.close()
                raise
        except BaseException:
            turns.__exit__(None, None, None)
            raise
        return session

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        session, store = self.session, self.store
        try:
            try:
                if kind is None:
                    session.commit()
                else:
                    session.abort()
            except BaseException:
                session.abort()
                raise
            finally:
                store.end_operation(session, self.write)
        finally:
            try:
                session.close()
            finally:
                self.turns.__exit__(None, None, None)


class _Translated:
    """:meth:`SQLStore._translated` (a class, for the reason :class:`_Operation` is)."""

    __slots__ = ("store",)

    def __init__(self, store: SQLStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if kind is None:
            return
        store = self.store
        if isinstance(error, exc.DBAPIError):
            if store.is_retryable(error):
                raise _Retry() from error
            if (isinstance(error, _UNAVAILABLE) or error.connection_invalidated
                    or store.is_missing_table(error)):
                raise store._unavailable(error) from error
        elif isinstance(error, exc.TimeoutError):  # pool exhausted
            raise store._unavailable(error) from error
        elif isinstance(error.__cause__, store.engine.dialect.loaded_dbapi.Error) and not (
            isinstance(error, LockingError)
        ):
            # A handle_error listener's own exception for a driver failure: still a store
            # failure to the lock API (docs/stores.rst, "Engine events").
            raise store._unavailable(error) from error
