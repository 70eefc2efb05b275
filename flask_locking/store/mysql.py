"""MySQL / MariaDB (PyMySQL): ``INSERT ... ON DUPLICATE KEY UPDATE`` plus a read-back.

MySQL evaluates the assignments of ``ON DUPLICATE KEY UPDATE`` left to right, each one
seeing the columns already assigned. So every assignment that tests the old grant comes
before the columns that test reads, and ``secret``, ``locked_at_ms`` and ``timeout_ms``
(which decide expiry: an empty secret is a released grant) are assigned last. The winner
is read back in the same transaction, never taken from ``rowcount`` (the drivers set
FOUND_ROWS, which makes losers look like winners).

Overlaps with locks on other rows (infinite depth) are found by a locking read, which waits
for any transaction still writing one of those rows; InnoDB breaks the rare deadlock of two
such acquirers, and the loser is retried.

Statements that need no result of another are sent together, in one round trip
(:meth:`~flask_locking.store.driver.Session.run_together`): an acquisition's upsert, overlap
check, lease stamp and read-back, and on MariaDB its event and the transaction's end, COMMIT
when it won, else ROLLBACK, decided in SQL (:meth:`MySQLStore.acquire_at_once`; an overlap,
or a lease that ended while the upsert waited, goes the general way: the upsert with its
read-back, then the overlap check with the lease stamp and its read-back); a refresh's row
lock, UPDATE and read-back; an event with the COMMIT
(:class:`~flask_locking.store.events.MySQLEventLog`). The server runs them in order, so
each still waits where it waited alone. The upsert, whose long ``ON DUPLICATE KEY UPDATE``
costs the server more to parse than to run, and the acquisition's other writes are prepared
once per connection (``PREPARE`` / ``EXECUTE ... USING``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Connection

from .base import AcquireRequest, EventFor, LockRow
from .batch import commits_together
from .driver import Compiled, Session, first
from .eventlog import GrantEvent
from .events import EventLog, MySQLEventLog, grant_event_params, grant_event_values
from .sql import SQLStore, _grant, _one, _row, _shaped, ended_at, overlap_at, overlap_params
from .upsert import PROPOSED_COLUMNS, proposed_values

#: SERVER_STATUS_IN_TRANS: the server's reply says a transaction is open.
_IN_TRANSACTION = 1

# ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT; ER_UNKNOWN_STMT_HANDLER: a statement prepared on
# the connection is gone (the acquisition goes the general way, and the next one prepares
# it again)
_RETRYABLE = {1213, 1205, 1243}


class MySQLStore(SQLStore):
    """Lock store on MySQL 8 / MariaDB 10.6+ (InnoDB, READ COMMITTED)."""

    dialect_names = ("mysql", "mariadb")

    def now_expression(self) -> sa.ColumnElement[int]:
        # UTC_TIMESTAMP(3) is fixed for the duration of one statement. Not
        # UNIX_TIMESTAMP(NOW(3)): that converts through the session time zone, and in a zone
        # with daylight saving the repeated autumn hour maps to the same epoch twice, so the
        # clock would run backwards for an hour and locks would outlive their timeout.
        return sa.literal_column(
            "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(3)) DIV 1000)",
            sa.BigInteger,
        )

    def build_upsert(self) -> sa.Executable:
        t = self.table
        stmt = mysql_insert(t).values(
            dict(zip(PROPOSED_COLUMNS, proposed_values(self.now_expression()), strict=True))
        )
        new = stmt.inserted
        expired = ended_at(t, new.locked_at_ms)
        take = sa.or_(expired, t.c.owner_key == new.owner_key)
        # Once owner_key is assigned, "the row is the caller's" is exactly "take".
        mine_now = t.c.owner_key == new.owner_key

        def pick(condition: Any, column: str) -> Any:
            return sa.case((condition, getattr(new, column)), else_=t.c[column])

        return stmt.on_duplicate_key_update(
            [
                ("version", sa.case((expired, t.c.version + 1), else_=t.c.version)),
                ("owner_id", pick(take, "owner_id")),
                ("owner_name", pick(take, "owner_name")),
                ("owner_url", pick(take, "owner_url")),
                # The owner locking again may strengthen its lock but never weaken it.
                ("stealable", sa.case((expired, new.stealable),
                                      (take, sa.and_(t.c.stealable, new.stealable)),
                                      else_=t.c.stealable)),
                ("infinite", sa.case((expired, new.infinite),
                                     (take, sa.or_(t.c.infinite, new.infinite)),
                                     else_=t.c.infinite)),
                ("owner_key", pick(take, "owner_key")),
                # The secret and then the expiry columns last: "expired" reads all three
                # (an empty secret is a released grant), so everything above still saw
                # the old grant.
                ("secret", pick(expired, "secret")),
                ("locked_at_ms", pick(mine_now, "locked_at_ms")),
                ("timeout_ms", pick(mine_now, "timeout_ms")),
            ]
        )

    def run_upsert(self, conn: Session, params: dict[str, Any]) -> LockRow | None:
        # The upsert holds the row's lock until commit, so the read after it (sent with it)
        # sees its outcome.
        _, read = conn.run_together(
            [(self._upsert, params), (self._select_row, {"resource": params["resource"]})]
        )
        row = _row(first(read))
        return row if row is not None and row.owner_key == params["owner_key"] else None

    acquires_at_once = True

    def acquire_at_once(
        self, conn: Session, request: AcquireRequest, event: EventFor | None = None
    ) -> LockRow | None:
        # One round trip, in this order (the server stops at the first error, and the
        # operation then rolls back): the upsert, which takes the row's lock; the locking
        # read of the overlapping rows, which waits for any transaction still writing one
        # of them (after the upsert, as on the general path: of two overlapping acquirers,
        # the second to read finds the first's row), noting in a session variable that it
        # found one; the decision, in another: won when the row is ours ("owner_key =
        # ours" is exactly "the upsert took it", and we hold its lock) and no overlap was
        # found; the lease stamped at the clock after every wait, only when won; the row
        # as it is then, with that clock and the decision, for a loser to name its holder.
        # On MariaDB the batch ends the transaction itself: a winner's event written from
        # the stamped row (GrantEvent: counter bump and INSERT, each only when won), then
        # COMMIT when won, else ROLLBACK. Elsewhere (or for an event that is only a
        # function) the event and the COMMIT go in one more round trip (record()).
        resource = request.resource
        check = self._overlap_now(request)
        log = self._events
        ends = bool(getattr(conn.dialect, "is_mariadb", False))
        appends = self.records(event) and isinstance(event, GrantEvent) and isinstance(
            log, MySQLEventLog
        )
        if self.records(event) and not appends:
            ends = False
        grant = {"grant_resource": resource, "grant_owner": request.owner_key}
        overlap = appended = None
        try:
            with conn.together():
                self._run_prepared(conn, self._upsert, request.proposed())
                conn.execute(_NO_OVERLAP)
                if check is not None:
                    compiled, params = check
                    overlap = conn.execute(compiled.sql, compiled.bind(params))
                self._run_prepared(conn, self._decide, grant)
                self._run_prepared(conn, self._stamp_owner, grant)
                holder = conn.run(self._select_holder_json, {"resource": resource})
                if ends and appends:
                    assert isinstance(event, GrantEvent) and isinstance(log, MySQLEventLog)
                    bump, insert = self._appended(log)
                    values = {**grant, **grant_event_params(event, request.secret)}
                    self._run_prepared(conn, bump, {})
                    appended = self._run_prepared(conn, insert, values)
                if ends:
                    conn.execute(_END)
        except BaseException:
            # (a statement prepared in this batch may not have been: prepare them again)
            conn.connection.info.pop(_PREPARED, None)
            raise
        if ends:
            conn.committed = True  # (or rolled back: the operation has nothing to send)
        packed = first(holder)
        found = None if packed is None else json.loads(packed[0])
        won = packed is not None and bool(packed[1])
        if not won:
            # Lost: another owner's grant live at the read after every wait is decided
            # here; anything else (a lease that ended while we waited, an overlap live at
            # the check's clock: the general path looks again at a lock that ends before
            # the lease starts) goes the general way, from nothing.
            if not ends:
                conn.rollback()
            self.refused_by(found, request)
            return None
        assert found is not None and (overlap is None or first(overlap) is None)
        row = _one(found[:-1])
        if appended is not None:
            assert log is not None
            log._written_and_committed(int(first(appended)[0]))
        elif self.records(event):
            self.record(conn, event, row)  # and COMMIT, in the same round trip
        return row

    def _appended(self, log: MySQLEventLog) -> tuple[sa.Executable, sa.Executable]:
        """The two statements of :meth:`acquire_at_once` that write its event, built once
        per log (see :meth:`MySQLEventLog.appended_when`)."""
        found = self._appended_by_log.get(id(log))
        if found is None:
            t = self.table
            found = self._appended_by_log[id(log)] = log.appended_when(
                _WON, grant_event_values(t.c), t, t.c.resource == sa.bindparam("grant_resource")
            )
        return found

    def _run_prepared(self, conn: Session, statement: Any, params: Mapping[str, Any]) -> Any:
        """Run ``statement`` (built once, compiled once per store) as a statement the
        server prepared on this connection (``PREPARE`` sent once per connection, in the
        same batch as its first ``EXECUTE``): MariaDB then skips parsing and resolving it,
        which for the upsert's long ``ON DUPLICATE KEY UPDATE`` is most of its cost. Only
        on the store's own multi-statement connections and where no engine listener
        watches statements (a listener sees the statement itself, run as such)."""
        if conn.observed or not commits_together(conn):
            return conn.run(statement, params)
        prepared = self._prepared.get(id(statement))
        if prepared is None:
            prepared = _Prepared(self.driver(statement), self.table.name)
            self._prepared[id(statement)] = prepared
        done = conn.connection.info.setdefault(_PREPARED, set())
        if prepared.name not in done:
            conn.execute(prepared.prepare, (prepared.text,))
            done.add(prepared.name)  # (dropped again if the batch fails)
        return conn.execute(prepared.execute, prepared.values(params))

    def _overlap_now(self, request: AcquireRequest) -> tuple[Any, dict[str, Any]] | None:
        """The locking overlap read of ``request`` live at its own statement's clock (one
        statement per shape), with its parameters; ``None`` when nothing can overlap."""
        count, infinite = len(request.ancestors), request.infinite
        if not count and not infinite:
            return None

        def build() -> sa.Select[Any]:
            t = self.table
            where = overlap_at(t, count, infinite, self.now_expression())
            noted = _OVERLAP.op(":=")(t.c.resource)  # (only for a row it returns)
            return self.lock_overlap_check(sa.select(noted).where(where).limit(1))

        stmt, kept = _shaped(self._overlap_now_by_shape, (count, infinite), build)
        return (self.driver(stmt) if kept else Compiled(stmt, self.engine.dialect),
                overlap_params(request))

    def overlap_then_lease(
        self, conn: Session, request: AcquireRequest, row: LockRow
    ) -> tuple[LockRow | None, LockRow]:
        # One round trip: the locking read (it waits for the rows it reads), the lease
        # stamp (its clock read after that wait) and the read-back, in that order.
        steps: list[Any] = []
        check = self._overlap_check(request, row.locked_at_ms)
        if check is not None:
            steps.append(check)
        steps += [(self._start_lease, _grant(row)), (self._select_row, {"resource": row.resource})]
        outcomes = conn.run_together(steps)
        overlap = _row(first(outcomes[0])) if check is not None else None
        return overlap, _one(first(outcomes[-1]))

    def refresh_grant(
        self, conn: Session, row: LockRow, params: dict[str, Any], *, commit: bool
    ) -> LockRow | None:
        # One round trip (with the COMMIT when no event follows): the row lock, waited for
        # before the UPDATE reads the clock; the UPDATE, which names this grant; the
        # read-back under that lock (read whatever the UPDATE matched: a row is only
        # returned when it matched).
        _, updated, read = conn.run_together(
            [
                (self._lock_row, {"grant_resource": row.resource}),
                (self._refresh, params),
                (self._select_row, {"resource": row.resource}),
            ],
            commit=commit,
        )
        return _row(first(read)) if updated.rowcount else None

    def live(self, resource: str) -> LockRow | None:
        rows = self.read_rows(self._select_live_json, {"resource": resource})
        return _one(json.loads(rows[0][0])) if rows else None

    def live_among(self, resources: Sequence[str]) -> list[LockRow]:
        # (as SQLStore.live_among: one statement per number of keys; the rows as JSON)
        t = self.table
        count = len(resources)
        if not count:
            return []
        stmt, kept = _shaped(
            self._live_among_json_by_count, count,
            lambda: sa.select(sa.func.JSON_ARRAY(*t.c)).where(
                t.c.resource.in_([sa.bindparam(f"k{i}") for i in range(count)]), self._live
            ),
        )
        params = {f"k{i}": key for i, key in enumerate(resources)}
        return [_one(json.loads(r[0])) for r in self.read_rows(stmt, params, once=not kept)]

    def event_log(self, *, retention: float = 3600.0) -> EventLog:
        return MySQLEventLog(self, retention=retention)

    def connection_is_idle(self, dbapi_connection: Any) -> bool:
        # PyMySQL keeps the server's status flags of the last reply.
        return not dbapi_connection.server_status & _IN_TRANSACTION

    def lock_overlap_check(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        return stmt.with_for_update(read=True)

    @contextlib.contextmanager
    def single_statement(self) -> Iterator[Connection]:
        with self._autocommit.connect() as conn:
            yield conn

    def is_missing_table(self, error: exc.DBAPIError) -> bool:
        args: tuple[Any, ...] = getattr(error.orig, "args", ())
        return bool(args) and args[0] == 1146  # ER_NO_SUCH_TABLE

    def is_retryable(self, error: exc.DBAPIError) -> bool:
        args: tuple[Any, ...] = getattr(error.orig, "args", ())
        return bool(args) and args[0] in _RETRYABLE

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        return mysql_insert(table).prefix_with("IGNORE")

    def _build_statements(self) -> None:
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        super()._build_statements()
        t = self.table
        self._overlap_now_by_shape: dict[tuple[int, bool], sa.Select[Any]] = {}
        self._prepared: dict[int, _Prepared] = {}
        # Rows read on the hot paths come back as one JSON array each: PyMySQL then reads
        # one column's metadata instead of eleven or twelve (a third of such a read's cost
        # in the worker). _select_holder's row with the clock; the live row of a key.
        self._select_holder_json = sa.select(
            sa.func.JSON_ARRAY(*t.c, self.now_expression()), _WON
        ).where(t.c.resource == sa.bindparam("resource"))
        self._select_live_json = sa.select(sa.func.JSON_ARRAY(*t.c)).where(
            t.c.resource == sa.bindparam("resource"), self._live
        )
        self._live_among_json_by_count: dict[int, sa.Select[Any]] = {}
        # (no RETURNING for UPDATE on MariaDB: the row is read back after it)
        ours = sa.and_(t.c.resource == sa.bindparam("grant_resource"),
                       t.c.owner_key == sa.bindparam("grant_owner"))
        # acquire_at_once's decision, kept in a session variable for the statements after
        # it: the row is ours and the overlap read found nothing (each batch sets both).
        self._decide = sa.select(
            _WON.op(":=")(sa.and_(_OVERLAP.is_(None), sa.exists().where(ours)).self_group())
        )
        self._stamp_owner = (
            sa.update(t).where(ours, _WON).values(locked_at_ms=self.now_expression())
        )
        self._appended_by_log: dict[int, tuple[sa.Executable, sa.Executable]] = {}


#: Session variables of :meth:`MySQLStore.acquire_at_once`: the overlap its locking read
#: found (``NULL``: none), and whether it won (reset, then set, in every batch).
_OVERLAP = sa.literal_column("@flask_locking_overlap", sa.String)
_WON = sa.literal_column("@flask_locking_won", sa.Boolean)
_NO_OVERLAP = "SET @flask_locking_overlap = NULL"
#: The end of a MariaDB acquisition's batch (EXECUTE IMMEDIATE: MariaDB 10.2+).
_END = "EXECUTE IMMEDIATE IF(@flask_locking_won, 'COMMIT', 'ROLLBACK')"

#: Key, in a pooled connection's ``info``, of the names of the statements prepared on it
#: (that ``info`` lives exactly as long as the driver connection, and so do they).
_PREPARED = "flask_locking.prepared"
#: A pyformat bind as SQLAlchemy compiles it for PyMySQL.
_BIND = re.compile(r"%\((\w+)\)s")


class _Prepared:
    """A compiled statement as an SQL-level prepared statement: ``PREPARE name FROM '...'``
    with ``?`` for its binds, run as ``EXECUTE name USING <values>`` (MariaDB takes any
    expression there; PyMySQL quotes the values, as it would in the statement itself)."""

    __slots__ = ("compiled", "execute", "name", "names", "prepare", "text")

    def __init__(self, compiled: Compiled, table_name: str) -> None:
        self.compiled = compiled
        self.names = _BIND.findall(compiled.sql)
        self.text = _BIND.sub("?", compiled.sql).replace("%%", "%")
        digest = hashlib.sha1((table_name + "\0" + self.text).encode()).hexdigest()[:24]
        self.name = name = "flask_locking_" + digest
        self.prepare = f"PREPARE {name} FROM %s"
        self.execute = f"EXECUTE {name}" + (
            " USING " + ", ".join(["%s"] * len(self.names)) if self.names else ""
        )

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        bound = self.compiled.bind(params)
        return tuple(bound[name] for name in self.names)
