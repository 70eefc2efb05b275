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
(:meth:`~flask_locking.store.driver.Session.run_together`): the upsert with its read-back;
the overlap check with the lease stamp and its read-back; a refresh's row lock, UPDATE and
read-back; the event with the COMMIT (:class:`~flask_locking.store.events.MySQLEventLog`).
The server runs them in order, so each still waits where it waited alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Connection

from .base import AcquireRequest, LockRow
from .driver import Session, first
from .events import EventLog, MySQLEventLog
from .sql import SQLStore, _grant, _one, _row, ended_at
from .upsert import PROPOSED_COLUMNS, proposed_values

#: SERVER_STATUS_IN_TRANS: the server's reply says a transaction is open.
_IN_TRANSACTION = 1

# ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
_RETRYABLE = {1213, 1205}


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
