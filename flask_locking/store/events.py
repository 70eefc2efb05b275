"""The SQL stores' log of lock events, next to the lock table (one per store).

Each event is one row in ``<table>_events``; its id comes from a counter row incremented in
the same transaction, so ids are gapless and become visible in id order on every backend
(an autoincrement id can commit out of order, and a reader that moved past it would never
see it). Readers only ever ask "what came after id n", one small primary-key range query.

:class:`PostgreSQLEventLog` also sends ``NOTIFY`` in the writing transaction, so a listener
in another process wakes at once instead of at its next poll.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import operator
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import bindparam, exc
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.schema import CreateIndex, CreateTable

from .base import LockRow
from .driver import Session, first
from .eventlog import ChangeListener, EventLog, EventRow, GrantEvent, NewEvent
from .schema import event_head_table, event_table

if TYPE_CHECKING:
    from .sql import SQLStore

log = logging.getLogger("flask_locking")

#: The columns of a lock row that an event keeps (never its secret nor its owner key).
LOCK_COLUMNS = (
    "resource", "version", "owner_id", "owner_name", "owner_url", "stealable", "infinite",
    "timeout_ms", "locked_at_ms",
)
#: Key of the counter row in the head table.
_HEAD = "events"
#: Writers prune old events once every this many events (so a store nobody listens to
#: still keeps a bounded log).
PRUNE_EVERY = 256


__all__ = [
    "ChangeListener", "EventLog", "EventRow", "MySQLEventLog", "NewEvent", "PostgreSQLEventLog",
    "SQLEventLog", "SQLiteEventLog",
]

#: MySQL's ER_BAD_NULL_ERROR ("Column ... cannot be null").
_MYSQL_NULL = 1048


class SQLEventLog(EventLog):
    """Append and read lock events on a :class:`~flask_locking.store.sql.SQLStore`."""

    def __init__(self, store: SQLStore, *, retention: float = 3600.0) -> None:
        super().__init__(retention=retention)
        self.store = store
        metadata = store.table.metadata
        self.table = event_table(metadata, store.table.name)
        self.head_table = event_head_table(metadata, store.table.name)
        t, h = self.table, self.head_table
        now = store.now_expression()
        self._bump = (
            sa.update(h).where(h.c.name == _HEAD).values(last_id=h.c.last_id + 1)
        )
        self._read_head = sa.select(h.c.last_id).where(h.c.name == _HEAD)
        # The new id straight from the bump where UPDATE has RETURNING (not MariaDB).
        self._bump_returning = (
            self._bump.returning(h.c.last_id) if store.engine.dialect.update_returning else None
        )
        self._seed_head = store.insert_ignore(h).values(
            name=_HEAD,
            last_id=sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0)).scalar_subquery(),
        )
        columns = ("event", "by_id", "by_name", *LOCK_COLUMNS)
        self._columns = columns
        self._insert = sa.insert(t).values(
            id=bindparam("new_id"), time_ms=now, **{c: bindparam(c) for c in columns}
        )
        self._after = (
            sa.select(*[t.c[name] for name in ("id", "time_ms", *columns)])
            .where(t.c.id > bindparam("after"))
            .order_by(t.c.id)
            .limit(bindparam("limit"))
        )
        self._oldest = sa.select(sa.func.min(t.c.id))
        keep_ms = bindparam("keep_ms", type_=sa.BigInteger)
        self._prune = sa.delete(t).where(t.c.time_ms < now - keep_ms)

    def exists(self) -> bool:
        inspector = sa.inspect(self.store.engine)
        return all(inspector.has_table(table.name) for table in (self.table, self.head_table))

    def create_schema(self) -> None:
        """Create the event tables (if missing) and the counter row."""
        for table in (self.table, self.head_table):
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(CreateTable(table, if_not_exists=True))
                    for index in table.indexes:
                        conn.execute(CreateIndex(index, if_not_exists=True))
            except exc.DBAPIError:
                # Processes starting together: the loser of a CREATE race finds it there.
                if not sa.inspect(self.store.engine).has_table(table.name):
                    raise
        with self.store.engine.begin() as conn:
            conn.execute(self._seed_head)

    def append(self, event: NewEvent) -> int:
        """Write ``event``; return its id. Runs in its own short transaction, on the driver
        connection as the store's hot operations do."""
        store = self.store
        with store._translated(), store.operation(write=True) as conn:
            new_id = self.write(conn, event)
        self.committed()
        return new_id

    #: A prune that :meth:`write` left for after the commit (PostgreSQL).
    _prune_due = False

    def committed(self) -> None:
        """After the commit of a transaction that wrote events, its connection handed back:
        wake this process's readers (:attr:`appended`) and run a prune left for then."""
        if not self.appended.is_set():
            # A reader clears the flag before it reads the log: a flag still set means a
            # read still to come, which sees this commit (set() takes a lock; most writes
            # happen with no reader, the flag never cleared).
            self.appended.set()
        if self._prune_due:
            self._prune_due = False
            try:
                # On a hot-path connection (the one just handed back is kept idle for it):
                # a SQLAlchemy checkout could wait for the pool while connections are kept.
                with self.store._translated(), self.store.operation() as conn:
                    conn.run(self._prune, {"keep_ms": self.retention_ms})
            except Exception:  # the event has committed: the next prune catches up
                log.exception("flask-locking: could not prune lock events")

    def write(self, conn: Session, event: NewEvent) -> int:
        """Write ``event`` as the last step of ``conn``'s write transaction (a store
        operation's, see :meth:`~flask_locking.store.LockStore.record_events`); return its
        id. The caller commits (or rolls back, and the event was never written), then calls
        :meth:`committed`."""
        new_id = self._insert_event(conn, event)
        self.announce(conn, new_id)
        if new_id % PRUNE_EVERY == 0:
            conn.run(self._prune, {"keep_ms": self.retention_ms})
        return new_id

    def _written_and_committed(self, new_id: int) -> int:
        """``new_id``, written by a :meth:`write` that committed its transaction itself: a
        prune it makes due runs after the operation, when its connection is back (see
        :meth:`committed`; a prune here would take a second connection while this one is
        held)."""
        if new_id % PRUNE_EVERY == 0:
            self._prune_due = True
        return new_id

    def _insert_event(self, conn: Session, event: NewEvent) -> int:
        """Bump the counter and insert ``event`` with the new id; return the id."""
        new_id = self._next_id(conn)
        conn.run(self._insert, {"new_id": new_id, **_columns(event)})
        return new_id

    def _next_id(self, conn: Session) -> int:
        """Bump the counter row (its row lock orders the writers) and return the new id."""
        if self._bump_returning is not None:
            bumped = conn.first(self._bump_returning)
            if bumped is not None:
                return int(bumped[0])
        elif conn.run(self._bump).rowcount:
            return int(conn.first(self._read_head)[0])
        conn.run(self._seed_head)  # the head row was never seeded
        conn.run(self._bump)
        return int(conn.first(self._read_head)[0])

    def announce(self, conn: Session, event_id: int) -> None:
        """Tell other processes, inside the writing transaction, that ``event_id`` exists
        (default: nothing; they poll)."""

    def after(self, after_id: int, limit: int = 500) -> list[EventRow]:
        """Events with an id above ``after_id``, oldest first, at most ``limit``."""
        with self.store._translated(), self.store.single_statement() as conn:
            rows = conn.execute(self._after, {"after": after_id, "limit": limit})
            return [_event_row(*row) for row in rows]

    def head(self) -> int:
        """The id of the last event written (0 when none ever was)."""
        with self.store._translated(), self.store.single_statement() as conn:
            value = conn.execute(self._read_head).scalar()
            return int(value or 0)

    def oldest(self) -> int | None:
        """The smallest retained id (``None``: nothing retained)."""
        with self.store._translated(), self.store.single_statement() as conn:
            value = conn.execute(self._oldest).scalar()
            return None if value is None else int(value)

    def prune(self) -> int:
        """Delete events older than the retention; return how many."""
        with self.store._translated(), self.store.single_statement() as conn:
            return int(conn.execute(self._prune, {"keep_ms": self.retention_ms}).rowcount)


#: The values of :data:`LOCK_COLUMNS` from a lock row, in that order.
_lock_values = operator.itemgetter(*[LockRow._fields.index(name) for name in LOCK_COLUMNS])


def _columns(event: NewEvent) -> dict[str, Any]:
    """The event table's values for ``event``."""
    values = dict(zip(LOCK_COLUMNS, _lock_values(event.lock), strict=True))
    values["event"], values["by_id"], values["by_name"] = event.event, event.by_id, event.by_name
    return values


def event_params(event: NewEvent) -> dict[str, Any]:
    """The binds of :meth:`PostgreSQLEventLog.with_event` for ``event``."""
    return {"ev_" + name: value for name, value in _columns(event).items()}


def grant_event_values(row: Any) -> list[sa.ColumnElement[Any]]:
    """The event columns (``event``, ``by_id``, ``by_name``, then :data:`LOCK_COLUMNS`) of
    the acquisition event :class:`GrantEvent` makes, written in SQL from ``row`` (the
    columns of the row a statement stamped): its kind by whether the row holds the
    request's secret, the rest bound (see :func:`grant_event_params`)."""
    kind = sa.case(
        (row.secret == bindparam("grant_secret", type_=sa.String),
         bindparam("ev_won", type_=sa.String)),
        else_=bindparam("ev_kept", type_=sa.String),
    )
    return [kind, bindparam("ev_by_id", type_=sa.String),
            bindparam("ev_by_name", type_=sa.String), *[row[name] for name in LOCK_COLUMNS]]


def grant_event_params(event: GrantEvent, secret: str) -> dict[str, Any]:
    """The binds of the acquisition event ``event`` written in SQL from the row a statement
    stamps (see :meth:`PostgreSQLEventLog.appended_from`): the row's own columns, the
    kind by whether it holds ``secret`` (bind ``grant_secret``)."""
    return {"grant_secret": secret, "ev_won": event.granted, "ev_kept": event.refreshed,
            "ev_by_id": event.by_id, "ev_by_name": event.by_name}


def _event_row(
    event_id: int, time_ms: int, event: str, by_id: str | None, by_name: str | None,
    *lock: Any,
) -> EventRow:
    """An event as read back (in the column order of the ``after`` query)."""
    values = dict(zip(LOCK_COLUMNS, lock, strict=True))
    return EventRow(
        int(event_id), int(time_ms), event, LockRow(secret="", owner_key="", **values),
        by_id, by_name,
    )


class SQLiteEventLog(SQLEventLog):
    """SQLite: no ``RETURNING``. The counter is bumped by a plain ``UPDATE``, the event
    inserted with the bumped value read from the counter row in the ``INSERT`` itself, and
    its id read from the driver (``lastrowid``: the event table's ``id`` is its rowid).
    SQLite runs a ``RETURNING`` clause as a trigger of its own: the bump's was the dearest
    part of an event's write (about a fifth of its instructions, transaction included)."""

    def __init__(self, store: SQLStore, *, retention: float = 3600.0) -> None:
        super().__init__(store, retention=retention)
        t, h = self.table, self.head_table
        # No head row, no event: the INSERT then inserts nothing (never an id of SQLite's
        # choosing, as a NULL id would get).
        source = sa.select(
            h.c.last_id, store.now_expression(), *[bindparam(c) for c in self._columns]
        ).where(h.c.name == _HEAD)
        self._insert_from_head = sa.insert(t).from_select(
            ["id", "time_ms", *self._columns], source
        )
        # The column SQLite names for the rowid of the event table: "id" when id is it.
        rowid: sa.ColumnElement[Any] = sa.literal_column("rowid")
        self._rowid_name = sa.select(rowid).select_from(t).limit(0)
        self._id_is_rowid: bool | None = None

    def _insert_event(self, conn: Session, event: NewEvent) -> int:
        if not self._ids_are_rowids(conn):
            return super()._insert_event(conn, event)
        if not conn.run(self._bump).rowcount:
            conn.run(self._seed_head)  # the head row was never seeded
            conn.run(self._bump)
        cursor = conn.run(self._insert_from_head, _columns(event))
        if cursor.rowcount != 1:  # (the head row is ours until the commit)
            raise RuntimeError("flask-locking: the lock event counter row is missing")
        return int(cursor.lastrowid)

    def _ids_are_rowids(self, conn: Session) -> bool:
        """Whether the event table's ``id`` is its rowid, so that ``lastrowid`` is the
        event's id: true of every table this package creates (``INTEGER PRIMARY KEY``),
        asked of SQLite once (a table made by hand may differ: ``BIGINT`` keys, ``WITHOUT
        ROWID``). Asked on the driver directly: a probe, not one of the store's statements."""
        if self._id_is_rowid is None:
            try:
                compiled = self.store.driver(self._rowid_name)
                probe = conn.dbapi.execute(compiled.sql, compiled.bind({}))
                self._id_is_rowid = probe.description[0][0] == "id"
                probe.close()
            except conn.dialect.loaded_dbapi.Error:  # WITHOUT ROWID: no rowid at all
                self._id_is_rowid = False
        return self._id_is_rowid


class MySQLEventLog(SQLEventLog):
    """MySQL / MariaDB: the counter's bump, the event and the transaction's ``COMMIT`` in
    one round trip (:meth:`~flask_locking.store.driver.Session.run_together`)."""

    def __init__(self, store: SQLStore, *, retention: float = 3600.0) -> None:
        super().__init__(store, retention=retention)
        t, h = self.table, self.head_table
        # The id read from the counter row in the INSERT itself (the transaction's own
        # bump, under its row lock), so that nothing waits on a result in between. A head
        # row never seeded reads NULL, which a single-row INSERT refuses in any SQL mode:
        # then nothing after it runs, the COMMIT included.
        head = sa.select(h.c.last_id).where(h.c.name == _HEAD).scalar_subquery()
        self._insert_next = sa.insert(t).values(
            id=head, time_ms=store.now_expression(),
            **{c: bindparam(c) for c in self._columns},
        )
        # Where INSERT has RETURNING (MariaDB 10.5+), the id comes back from the INSERT
        # itself, and no read of the counter follows it.
        self._insert_returning = self._insert_next.returning(t.c.id)

    def appended_when(
        self, condition: sa.ColumnElement[bool], values: Sequence[sa.ColumnElement[Any]],
        source: sa.FromClause, *where: sa.ColumnElement[bool],
    ) -> tuple[sa.Executable, sa.Executable]:
        """Two statements, run in this order in a write transaction, that append one event
        when ``condition`` holds (else write nothing, not even the counter's bump): the
        counter bumped (an upsert, so a head row never seeded is seeded from the events
        kept; its row lock, held to the commit, orders the ids), then the event inserted
        with the new id and ``values`` (the columns ``event``, ``by_id``, ``by_name``, then
        :data:`LOCK_COLUMNS`), read from the one row of ``source`` where ``where`` holds,
        returning its id (MariaDB's ``INSERT ... RETURNING``)."""
        t, h = self.table, self.head_table
        seed = sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0) + 1).scalar_subquery()
        bump = (
            mysql_insert(h)
            .from_select(["name", "last_id"], sa.select(sa.literal(_HEAD), seed).where(condition))
            .on_duplicate_key_update(last_id=h.c.last_id + 1)
        )
        rows = sa.select(h.c.last_id, self.store.now_expression(), *values).select_from(
            source.join(h, h.c.name == _HEAD)
        ).where(condition, *where)
        insert = (
            sa.insert(t).from_select(["id", "time_ms", *self._columns], rows).returning(t.c.id)
        )
        return bump, insert

    def write(self, conn: Session, event: NewEvent) -> int:
        """Bump the counter, insert the event with the new id, read the id, and ``COMMIT``:
        ``conn``'s transaction is committed when this returns. A failed statement skips the
        ``COMMIT`` (the server stops at it) and the caller rolls back."""
        try:
            if conn.dialect.insert_returning:
                *_, read = conn.run_together(
                    [(self._bump, {}), (self._insert_returning, _columns(event))], commit=True
                )
            else:  # (MySQL)
                *_, read = conn.run_together(
                    [(self._bump, {}), (self._insert_next, _columns(event)),
                     (self._read_head, {})],
                    commit=True,
                )
        except exc.IntegrityError as error:
            if tuple(getattr(error.orig, "args", ()))[:1] != (_MYSQL_NULL,):
                raise
            # The head row was never seeded (tables made by a migration): the failed
            # INSERT undid only itself, so the transaction goes on the general way.
            return super().write(conn, event)
        return self._written_and_committed(int(first(read)[0]))


def channel_name(table_name: str) -> str:
    """The PostgreSQL ``NOTIFY`` channel of a lock table (a bounded, plain identifier)."""
    return "flask_locking_" + hashlib.sha256(table_name.encode()).hexdigest()[:24]


class PostgreSQLEventLog(SQLEventLog):
    """PostgreSQL: ``NOTIFY`` in the writing transaction; listeners ``LISTEN``."""

    def __init__(self, store: SQLStore, *, retention: float = 3600.0) -> None:
        super().__init__(store, retention=retention)
        self.channel = channel_name(store.table.name)
        self._notify = sa.text("SELECT pg_notify(:channel, :payload)")
        # The whole append as one statement: the counter bumped in a CTE (its row lock, held
        # to the commit, orders the ids; an upsert, so a head row never seeded is seeded
        # from the events kept), the event inserted with the new id, NOTIFY sent from
        # RETURNING (delivered at the commit, and only then).
        t, h = self.table, self.head_table
        seed = sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0) + 1).scalar_subquery()
        upsert = pg_insert(h).values(name=_HEAD, last_id=seed)
        head = (
            upsert.on_conflict_do_update(
                index_elements=[h.c.name], set_={"last_id": h.c.last_id + 1}
            )
            .returning(h.c.last_id).cte("head")
        )
        binds = [bindparam(c, type_=t.c[c].type) for c in self._columns]
        source = sa.select(head.c.last_id, store.now_expression(), *binds)
        self._append_at_once = (
            sa.insert(t)
            .from_select(["id", "time_ms", *self._columns], source)
            .returning(t.c.id, sa.func.pg_notify(self.channel, sa.cast(t.c.id, sa.Text)))
        )

    def with_event(self, change: sa.Update) -> sa.Select[Any]:
        """One statement that runs ``change`` (an ``UPDATE ... RETURNING`` of at most one
        row) and appends an event (binds ``ev_<column>``, see :func:`event_params`) only
        when it changed a row: the counter bumped, the event inserted and ``NOTIFY`` sent
        from the changed row, so that a lone statement in autocommit mode is the whole
        atomic write. Its one row: how many rows ``change`` changed, and the new event's id
        (``NULL`` when none)."""
        t = self.table
        changed = change.cte("changed")
        binds = [bindparam("ev_" + c, type_=t.c[c].type) for c in self._columns]
        appended = self.appended_from(changed, binds)
        return sa.select(
            sa.select(sa.func.count()).select_from(changed).scalar_subquery(),
            sa.select(appended.c.id).scalar_subquery(),
        )

    def appended_from(
        self, changed: sa.CTE, values: Sequence[sa.ColumnElement[Any]]
    ) -> sa.CTE:
        """A CTE appending one event for the one row of ``changed`` (none: nothing is
        written, not even the counter's bump): the counter bumped (an upsert, so a head row
        never seeded is seeded from the events kept; its row lock, held to the commit,
        orders the ids), the event inserted with the new id and ``values`` (the columns
        ``event``, ``by_id``, ``by_name``, then :data:`LOCK_COLUMNS`; they may refer to
        ``changed``), ``NOTIFY`` sent from its ``RETURNING`` (delivered at the commit, and
        only then). Its column ``id``: the new event's id."""
        t, h = self.table, self.head_table
        seed = sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0) + 1).scalar_subquery()
        head = (
            pg_insert(h)
            .from_select(["name", "last_id"],
                         sa.select(sa.literal(_HEAD), seed).select_from(changed))
            .on_conflict_do_update(
                index_elements=[h.c.name], set_={"last_id": h.c.last_id + 1}
            )
            .returning(h.c.last_id).cte("head")
        )
        # (the head has a row only when ``changed`` has one: joined, they are that one)
        source = sa.select(head.c.last_id, self.store.now_expression(), *values).select_from(
            head.join(changed, sa.true())
        )
        return (
            sa.insert(t)
            .from_select(["id", "time_ms", *self._columns], source)
            .returning(t.c.id, sa.func.pg_notify(self.channel, sa.cast(t.c.id, sa.Text)))
            .cte("appended")
        )

    def write(self, conn: Session, event: NewEvent) -> int:
        """Run the event's one statement, then the transaction's ``COMMIT``: ``conn``'s
        transaction is committed when this returns. A failed insert raises before the
        ``COMMIT`` and the caller rolls back. (Two plain round trips, not one pipeline:
        psycopg's pipeline mode costs the client more CPU than it saves for two
        statements, about 40 µs a write measured.)"""
        appended = first(conn.run(self._append_at_once, _columns(event)))
        conn.execute("COMMIT")
        return self._written_and_committed(int(appended[0]))

    def announce(self, conn: Session, event_id: int) -> None:
        # Delivered at commit, and only then: a listener never wakes for an event it
        # could not read yet.
        conn.first(self._notify, {"channel": self.channel, "payload": str(event_id)})

    def listener(self) -> ChangeListener:
        return PostgreSQLListener(self)


class PostgreSQLListener(ChangeListener):
    """``LISTEN`` on a connection of its own, outside the pool (whose watchdog cuts any
    connection held past the store timeout). Falls back to polling if it cannot listen."""

    log: PostgreSQLEventLog

    #: Seconds between two attempts to listen again after a failure (polling meanwhile).
    retry_after = 30.0

    def __init__(self, log: PostgreSQLEventLog) -> None:
        super().__init__(log)
        self.channel = log.channel
        self._conn: Any = None
        self._retry_at = 0.0

    def _connect(self) -> Any:
        engine = self.log.store.engine
        # A new driver connection made as the pool makes them (with the user's
        # connect_args), but never checked out of it.
        creator = getattr(engine.pool, "_creator", None)
        if creator is not None:
            conn = creator()
        else:  # pragma: no cover - every SQLAlchemy 2 pool has one
            cargs, cparams = engine.dialect.create_connect_args(engine.url)
            conn = engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
        conn.autocommit = True
        try:
            conn.execute(f'LISTEN "{self.channel}"')
        except BaseException:
            conn.close()
            raise
        return conn

    def wait(self, timeout: float) -> None:
        if self._conn is None and time.monotonic() >= self._retry_at:
            try:
                self._conn = self._connect()
            except Exception as error:  # noqa: BLE001 - no LISTEN: poll, try again later
                log.warning("flask-locking: cannot LISTEN for lock events (%s); polling", error)
                self._retry_at = time.monotonic() + self.retry_after
        if self._conn is None:
            super().wait(timeout)
            return
        try:
            # Each notification only means "read the table": one is enough to wake up.
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                pass
        except Exception as error:  # noqa: BLE001 - the server went away: poll until it is back
            log.warning("flask-locking: LISTEN connection lost (%s); polling", error)
            self.close()
            self._retry_at = time.monotonic() + 1.0

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken
                self._conn.close()
            self._conn = None
