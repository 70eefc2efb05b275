"""SQLite: one file shared by the processes of one host.

Writers are serialised by ``BEGIN IMMEDIATE`` (with WAL and a busy timeout), which also
makes the upsert plus the overlap check of one acquisition a single atomic step. A single
write statement in autocommit mode takes the same write lock before it reads anything (and
waits for it through the busy handler), so an acquisition that wins is one statement.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from .base import AcquireRequest, EventFor, LockRow
from .driver import Session, first
from .events import EventLog, SQLiteEventLog
from .sql import SQLStore, _row
from .upsert import OnConflictUpsert, proposed_values


class SQLiteStore(OnConflictUpsert, SQLStore):
    """Lock store on a SQLite file (SQLite ≥ 3.35 for ``RETURNING``)."""

    dialect_names = ("sqlite",)
    acquires_at_once = True

    def __init__(
        self, engine: Engine, metadata: sa.MetaData, table_name: str, *, timeout: float = 5.0,
        busy_timeout: float | None = None,
    ) -> None:
        # LOCKING_STORE_TIMEOUT is also how long a writer waits for the file's write lock.
        busy = timeout if busy_timeout is None else busy_timeout
        configure_sqlite_engine(engine, busy_ms=int(busy * 1000))
        # An in-memory database lives in its one connection, which every thread shares
        # (see sql_engine.memory_engine_options): its transactions must take turns here.
        in_memory = isinstance(engine.pool, StaticPool)
        self._turns: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if in_memory else contextlib.nullcontext()
        )
        # A lone SELECT on the driver (in autocommit mode) opens no transaction and needs no
        # BEGIN: reads run straight on a kept connection (SQLStore.read_rows), except in
        # memory, where every operation takes its turn on the one connection.
        self.reads_alone = not in_memory
        self._at_once_by_shape = {}
        super().__init__(engine, metadata, table_name, timeout=timeout)

    def event_log(self, *, retention: float = 3600.0) -> EventLog:
        return SQLiteEventLog(self, retention=retention)

    def now_expression(self) -> sa.ColumnElement[int]:
        # julianday('now') is fixed for the duration of one statement.
        return sa.cast(
            sa.func.round((sa.func.julianday("now") - 2440587.5) * 86400000.0), sa.BigInteger
        )

    def insert(self, table: sa.Table) -> Any:
        return sqlite_insert(table)

    def proposed_source(self) -> sa.Select[Any]:
        # julianday('now') is one instant for the whole statement. SQLite needs a WHERE
        # before ON CONFLICT in INSERT ... SELECT, hence the WHERE true.
        return sa.select(*proposed_values(self.now_expression())).where(sa.true())

    def hold_statement(self) -> sa.Executable:
        # SQLite has no row locks (FOR SHARE compiles to nothing). A no-op UPDATE makes the
        # host's transaction a write transaction: it takes the database's one write lock,
        # so no other connection's write (a store's BEGIN IMMEDIATE included) can commit
        # before the host's transaction ends. Readers (WAL) go on.
        t = self.table
        return (
            sa.update(t)
            .where(
                t.c.resource == sa.bindparam("hold_resource"),
                t.c.version == sa.bindparam("hold_version"),
                self._live,
            )
            .values(version=t.c.version)
            .returning(*t.c)
        )

    def acquire_at_once(
        self, conn: Session, request: AcquireRequest, event: EventFor | None = None
    ) -> LockRow | None:
        # The statement's clock is read under the write lock: the grant's instant, after
        # every wait, and the overlap check sees what is live at that same instant.
        won = _row(first(self.upsert_unless_overlap(conn, request)))
        if won is None:
            self.refused_by(conn.first(self._select_holder, {"resource": request.resource}),
                            request)
        else:
            self.record(conn, event, won)
        return won

    def turns(self) -> contextlib.AbstractContextManager[Any]:
        return self._turns

    def connection_is_idle(self, dbapi_connection: Any) -> bool:
        return not dbapi_connection.in_transaction

    def begin_operation(self, session: Session, write: bool) -> None:
        if write:  # the driver is in autocommit mode: this is the one BEGIN
            session.execute("BEGIN IMMEDIATE")

    def start_lease(self, conn: Session, row: LockRow) -> LockRow:
        # BEGIN IMMEDIATE waited for the write lock before the upsert read the clock, and
        # nothing waits after it: the upsert's reading is already the grant's instant.
        return row

    def wait_for_row(self, conn: Session, resource: str) -> None:
        pass  # BEGIN IMMEDIATE: every wait is over before the first statement

    @contextlib.contextmanager
    def single_statement(self) -> Iterator[Connection]:
        with self._turns, super().single_statement() as conn:
            yield conn

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        with self._turns, self.engine.begin() as conn:
            # The driver never begins by itself (autocommit mode), so this is the one BEGIN.
            # Issued here rather than from a "begin" event: an engine without connection
            # events skips their dispatch on every statement (about 15 us each).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn


_configured: weakref.WeakSet[Engine] = weakref.WeakSet()


def configure_sqlite_engine(engine: Engine, *, busy_ms: int = 5000) -> None:
    """WAL, a busy timeout, and no implicit transactions: a single statement runs in
    SQLite's own; :meth:`SQLiteStore.write_transaction` says ``BEGIN IMMEDIATE``."""
    if engine in _configured:
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: only an explicit BEGIN opens a transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        _enable_wal(cursor, busy_ms / 1000)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    _configured.add(engine)


def _enable_wal(cursor: Any, budget: float) -> None:
    """Switch the file to WAL (persistent, so once per file in practice).

    The switch needs the file to itself, and SQLite answers "database is locked" at once
    rather than through the busy handler when several processes open a new file together;
    retry within the busy timeout, as the busy handler would have.
    """
    deadline = time.monotonic() + budget
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
