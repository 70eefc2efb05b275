"""PostgreSQL (psycopg 3): one ``INSERT ... ON CONFLICT ... RETURNING`` decides the winner.

Time is ``clock_timestamp()`` read once inside the statement, so app hosts whose clocks
disagree still agree on expiry. Infinite-depth locks are kept apart from overlapping locks on
other rows with transaction-scoped advisory locks: shared on every ancestor, exclusive on
the key of an infinite request; taken root first, so two acquirers never wait in a cycle.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from .base import AcquireRequest, EventFor, LockRow
from .driver import Session, first, stale_prepared_plan
from .eventlog import GrantEvent
from .events import (
    EventLog,
    PostgreSQLEventLog,
    event_params,
    grant_event_params,
    grant_event_values,
)
from .sql import SQLStore, _grant, _one
from .upsert import OnConflictUpsert, proposed_values

_ADVISORY = sa.text(
    "SELECT count(CASE WHEN k.n <= :shared"
    " THEN pg_advisory_xact_lock_shared(hashtextextended(:space || k.key, 0))::text"
    " ELSE pg_advisory_xact_lock(hashtextextended(:space || k.key, 0))::text END)"
    " FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n)"
)

#: psycopg's TransactionStatus.IDLE: connected, no transaction open.
_IDLE = 0

# SQLSTATEs a retry resolves: serialization_failure, deadlock_detected.
_RETRYABLE = {"40001", "40P01"}


class PostgreSQLStore(OnConflictUpsert, SQLStore):
    """Lock store on PostgreSQL (READ COMMITTED)."""

    dialect_names = ("postgresql",)

    def now_expression(self) -> sa.ColumnElement[int]:
        return sa.cast(
            sa.func.floor(sa.extract("epoch", sa.func.clock_timestamp()) * 1000), sa.BigInteger
        )

    def insert(self, table: sa.Table) -> Any:
        return pg_insert(table)

    def proposed_source(self) -> sa.Select[Any]:
        # clock_timestamp() moves during a statement: read it once, in a subquery.
        clock = sa.select(self.now_expression().label("now")).subquery("clock")
        return sa.select(*proposed_values(clock.c.now)).select_from(clock)

    acquires_at_once = True

    def acquire_at_once(
        self, conn: Session, request: AcquireRequest, event: EventFor | None = None
    ) -> LockRow | None:
        # One round trip (one driver call: Session.together) that is the whole transaction:
        # the advisory locks, the upsert that proposes its row only when no overlap is live
        # (its snapshot is taken after the advisory locks: every overlapping grant that
        # could race has committed or waits for us), then the lease stamped at the clock
        # after any wait for the row, as start_lease() does, with the event made from the
        # stamped row in the same statement; in that statement too, when the stamp touched
        # nothing, the row as it is then, for a loser to name its holder. Statements sent
        # together run in one implicit transaction (psycopg's pipeline, in autocommit
        # mode): the server commits it at the batch's end, or rolls it back at its first
        # error and skips the rest. So no BEGIN or COMMIT of ours, and a loser commits
        # too: the stamp acts only on a row version this transaction wrote (its xmin),
        # the upsert's, which exists exactly when the upsert won; a loser commits nothing
        # (no lease stamped, not even on an expired lock of ours that an overlap blocks;
        # no event; no counter bump).
        params: dict[str, Any] = {"grant_resource": request.resource,
                                  "grant_owner": request.owner_key}
        log = self._events
        if not self.records(event):
            statement = self._stamp_or_holder
        elif isinstance(event, GrantEvent) and isinstance(log, PostgreSQLEventLog):
            recorded = self._stamp_recorded.get(id(log))
            if recorded is None:
                recorded = self._stamp_recorded[id(log)] = self._stamp_or_holder_with(log)
            statement = recorded
            params.update(grant_event_params(event, request.secret))
        else:  # an event that is only a function: made from the row won, then written
            return self._acquire_then_record(conn, request, event, params)
        with conn.together():
            self.serialize_hierarchy(conn, request)
            upsert = self.upsert_unless_overlap(conn, request)
            stamped = conn.run(statement, params)
        found = first(stamped)
        event_id = None
        if found is not None and statement is not self._stamp_or_holder:
            *found, event_id = found  # (NULL on the holder's row: no event)
        if first(upsert) is None:
            self.refused_by(found, request)
            return None
        if found is None:  # (cannot happen: the upsert's row is ours to stamp)
            return None
        if event_id is not None:
            assert log is not None
            log._written_and_committed(int(event_id))
        return _one(found[:-1])

    def _acquire_then_record(
        self, conn: Session, request: AcquireRequest, event: EventFor | None,
        params: dict[str, Any],
    ) -> LockRow | None:
        """:meth:`acquire_at_once` for an ``event`` that only the row won can make: the
        same batch in a transaction of ours, then the event and the ``COMMIT`` (a second
        round trip), or the ``ROLLBACK``."""
        with conn.together():
            conn.execute("BEGIN")
            self.serialize_hierarchy(conn, request)
            upsert = self.upsert_unless_overlap(conn, request)
            stamped = conn.run(self._stamp_or_holder, params)
        found = first(stamped)
        if first(upsert) is None or found is None:
            conn.execute("ROLLBACK")
            self.refused_by(found, request)
            return None
        row = _one(found[:-1])
        self.record(conn, event, row)  # and COMMIT
        return row

    def release(self, row: LockRow, *, event: EventFor | None = None) -> bool:
        log = self._events
        if not self.records(event) or not isinstance(log, PostgreSQLEventLog):
            return super().release(row, event=event)
        assert event is not None
        # One statement in autocommit mode, atomic by itself: the release, and its event
        # only when it released (no BEGIN, no second round trip, no COMMIT to send).
        params = {**_grant(row), **event_params(event(row))}
        statement = self._release_recorded.get(id(log))
        if statement is None:
            statement = self._release_recorded[id(log)] = log.with_event(
                self._release.returning(self.table.c.resource)
            )
        with self._translated(), self.operation() as conn:
            released, new_id = conn.first(statement, params)
        if not released:
            return False
        log._written_and_committed(int(new_id))
        self.recorded(event)
        return True

    def recording_operation(self) -> contextlib.AbstractContextManager[Session]:
        # Autocommit, and our own BEGIN in batch(): psycopg's implicit BEGIN would be a
        # round trip of its own.
        return self.operation()

    @contextlib.contextmanager
    def batch(self, conn: Session) -> Iterator[None]:
        with conn.together():
            conn.execute("BEGIN")
            yield

    def serialize_hierarchy(self, conn: Session, request: AcquireRequest) -> None:
        keys = list(request.ancestors)
        if request.infinite:
            keys.append(request.resource)
        if not keys:
            return
        conn.run(
            _ADVISORY,
            {"keys": keys, "shared": len(request.ancestors), "space": self.table.name + ":"},
        )

    def connection_is_idle(self, dbapi_connection: Any) -> bool:
        return bool(dbapi_connection.info.transaction_status == _IDLE)

    def begin_operation(self, session: Session, write: bool) -> None:
        # The watchdog bounds each operation (a kept connection is checked out once).
        self._watchdog.arm(session.connection.dbapi_connection)
        if not write:  # one statement: no BEGIN round trip, no COMMIT
            session.connection.driver_connection.autocommit = True

    def end_operation(self, session: Session, write: bool) -> None:
        self._watchdog.disarm(session.connection.dbapi_connection)
        if not write and session.connection.is_valid:
            try:
                session.connection.driver_connection.autocommit = False
            except Exception as error:
                # (a transaction left open, or a broken connection): it must not go back to
                # the pool in autocommit, where a write operation would lose its transaction.
                session.connection.invalidate(error)

    @contextlib.contextmanager
    def single_statement(self) -> Iterator[Connection]:
        with self._autocommit.connect() as conn:
            yield conn

    def is_missing_table(self, error: exc.DBAPIError) -> bool:
        return getattr(error.orig, "sqlstate", None) == "42P01"  # undefined_table

    def is_retryable(self, error: exc.DBAPIError) -> bool:
        # A plan prepared before a migration changed the table: the connection was renewed
        # (see stale_prepared_plan), so the acquisition runs again on a fresh one.
        return (getattr(error.orig, "sqlstate", None) in _RETRYABLE
                or stale_prepared_plan(error.orig))

    def event_log(self, *, retention: float = 3600.0) -> EventLog:
        return PostgreSQLEventLog(self, retention=retention)

    def _build_statements(self) -> None:
        # The statements that run through SQLAlchemy (listing, purge, event reads) meet a
        # stale prepared plan too: SQLAlchemy then treats it as the disconnect it is for
        # every pooled connection (the hot path's driver_failure does the same).
        if not event.contains(self.engine, "handle_error", _stale_plan_disconnects):
            event.listen(self.engine, "handle_error", _stale_plan_disconnects)
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._watchdog = _Watchdog(lambda: self.retry_budget + 1.0)
        self._watchdog.attach(self.engine)
        self._at_once_by_shape = {}
        self._release_recorded: dict[int, sa.Select[Any]] = {}
        super()._build_statements()
        t = self.table
        # The lease stamp and, when it stamped nothing, the holder's row with the clock
        # (what _select_holder reads), in one statement: the stamp's row (ours) comes back
        # with its own locked_at_ms in the clock's place, else the holder's. (The SELECT
        # sees the statement's snapshot, taken after the upsert, as _select_holder sent
        # next would; its clock is read after that snapshot, so a holder live at it was
        # live at the snapshot.) The stamp touches only a row version written by this
        # transaction (xmin: the upsert's; none when it lost, and then no transaction id
        # may be assigned at all, hence "_if_assigned").
        self._stamp = (
            sa.update(t)
            .where(t.c.resource == sa.bindparam("grant_resource"),
                   t.c.owner_key == sa.bindparam("grant_owner"),
                   sa.literal_column("xmin = pg_current_xact_id_if_assigned()::xid",
                                     sa.Boolean))
            .values(locked_at_ms=self.now_expression())
            .returning(*t.c)
            .cte("stamp")
        )
        self._stamp_recorded: dict[int, sa.CompoundSelect[Any]] = {}
        self._stamp_or_holder = self._stamp_or_holder_with(None)

    def _stamp_or_holder_with(self, log: PostgreSQLEventLog | None) -> sa.CompoundSelect[Any]:
        """The statement after the upsert (see :meth:`acquire_at_once`); with ``log``, it
        also appends the acquisition's event made from the stamped row, as
        :class:`~flask_locking.store.eventlog.GrantEvent` makes it (binds of
        :func:`~flask_locking.store.events.grant_event_params`), and returns its id last."""
        t, stamp = self.table, self._stamp
        mine = sa.select(*stamp.c, stamp.c.locked_at_ms.label("now"))
        holder = sa.select(t, self.now_expression().label("now")).where(
            t.c.resource == sa.bindparam("grant_resource"),
            ~sa.exists().where(stamp.c.resource.is_not(None)),
        )
        if log is not None:
            appended = log.appended_from(stamp, grant_event_values(stamp.c))
            mine = mine.add_columns(sa.select(appended.c.id).scalar_subquery())
            holder = holder.add_columns(sa.null())
        return sa.union_all(mine, holder)


def _stale_plan_disconnects(context: Any) -> None:
    """``handle_error``: a statement prepared before the table changed shape fails on every
    connection that prepared it (see :func:`~flask_locking.store.driver.stale_prepared_plan`):
    the connection is invalidated, and with it every connection of the pool opened before."""
    if stale_prepared_plan(context.original_exception):
        context.is_disconnect = True


class _Watchdog:
    """Cut the socket of a connection kept busy past its deadline, so that nothing hangs.

    ``statement_timeout`` and ``lock_timeout`` are enforced by the server, and libpq has no
    read timeout: a server that stops answering with its sockets still open (a stopped or
    frozen process, a host swapping) would keep a request waiting forever. Every hot
    operation (one short transaction, on a connection the store may keep between
    operations, so it is armed per operation), every SQLAlchemy checkout and every ping gets
    a deadline of
    ``LOCKING_STORE_TIMEOUT`` + 1 s, after the server's own timeouts had their chance. A cut
    connection fails at once (the server rolls back its transaction), the pool drops it,
    and the store answers "unavailable".
    """

    def __init__(self, limit: Callable[[], float]) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, Any]] = {}
        self._thread_pid: int | None = None

    def attach(self, engine: sa.Engine) -> None:
        event.listen(engine, "checkout", lambda dbapi_conn, _rec, _proxy: self.arm(dbapi_conn))
        event.listen(engine, "checkin", lambda dbapi_conn, _rec: self.disarm(dbapi_conn))
        dialect = engine.dialect
        ping = dialect.do_ping

        def bounded_ping(dbapi_connection: Any) -> bool:
            self.arm(dbapi_connection)
            try:
                return ping(dbapi_connection)
            finally:
                self.disarm(dbapi_connection)

        dialect.do_ping = bounded_ping  # type: ignore[method-assign]

    def arm(self, dbapi_connection: Any) -> None:
        deadline = time.monotonic() + self._limit()
        pid = os.getpid()
        if self._thread_pid not in (None, pid):  # a forked child: the parent's thread is gone
            self._lock, self._armed, self._thread_pid = threading.Lock(), {}, None
        with self._lock:
            self._armed[id(dbapi_connection)] = (deadline, dbapi_connection)
            if self._thread_pid is None:
                self._thread_pid = pid
                threading.Thread(
                    target=self._watch, name="flask-locking-watchdog", daemon=True
                ).start()

    def disarm(self, dbapi_connection: Any) -> None:
        if dbapi_connection is not None:
            with self._lock:
                self._armed.pop(id(dbapi_connection), None)

    def _watch(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                if not self._armed:
                    self._thread_pid = None
                    return
                late = [key for key, (deadline, _conn) in self._armed.items() if deadline <= now]
                victims = [self._armed.pop(key)[1] for key in late]
            for victim in victims:
                _cut(victim)


def _cut(dbapi_connection: Any) -> None:
    """Shut the connection's socket down under the driver's feet (it then reports the
    connection as broken)."""
    try:
        sock = socket.socket(fileno=os.dup(dbapi_connection.pgconn.socket))
    except Exception:  # noqa: BLE001 - already closed: nothing to cut
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()
