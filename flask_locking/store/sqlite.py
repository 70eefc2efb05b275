"""SQLite: one file shared by the processes of one host.

Writers are serialised by ``BEGIN IMMEDIATE`` (with WAL and a busy timeout), which also
makes the upsert plus the overlap check of one acquisition a single atomic step.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from .base import LockRow
from .sql import SQLStore


class SQLiteStore(SQLStore):
    """Lock store on a SQLite file (SQLite ≥ 3.35 for ``RETURNING``)."""

    dialect_names = ("sqlite",)

    def __init__(
        self, engine: Engine, metadata: sa.MetaData, table_name: str, *, busy_timeout: float = 5.0
    ) -> None:
        configure_sqlite_engine(engine, busy_ms=int(busy_timeout * 1000))
        super().__init__(engine, metadata, table_name)

    def now_expression(self) -> sa.ColumnElement[int]:
        # julianday('now') is fixed for the duration of one statement.
        return sa.cast(
            sa.func.round((sa.func.julianday("now") - 2440587.5) * 86400000.0), sa.BigInteger
        )

    def build_upsert(self) -> sa.Executable:
        t = self.table
        now = self.now_expression()
        source: Any = sa.select(  # SQLAlchemy 2.1 cannot infer this many columns
            bindparam("resource"),
            bindparam("secret"),
            bindparam("owner_key"),
            bindparam("owner_id", type_=sa.String),
            bindparam("owner_name", type_=sa.String),
            bindparam("owner_url", type_=sa.String),
            bindparam("stealable", type_=sa.Boolean),
            bindparam("infinite", type_=sa.Boolean),
            bindparam("timeout_ms", type_=sa.BigInteger),
            now,
            sa.literal(1, sa.BigInteger),
        ).where(sa.true())  # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT
        stmt = sqlite_insert(t).from_select(
            [
                "resource", "secret", "owner_key", "owner_id", "owner_name", "owner_url",
                "stealable", "infinite", "timeout_ms", "locked_at_ms", "version",
            ],
            source,
        )
        return upsert_on_conflict(t, stmt)

    def run_upsert(self, conn: Connection, params: dict[str, Any]) -> LockRow | None:
        raw = conn.execute(self._upsert, params).first()
        return None if raw is None else LockRow(*raw)

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            # The driver never begins by itself (autocommit mode), so this is the one BEGIN.
            # Issued here rather than from a "begin" event: an engine without connection
            # events skips their dispatch on every statement (about 15 us each).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        return sqlite_insert(table).on_conflict_do_nothing()


def upsert_on_conflict(t: sa.Table, stmt: Any) -> sa.Executable:
    """``ON CONFLICT (resource) DO UPDATE ... WHERE <expired or mine> RETURNING *``.

    Shared by SQLite and PostgreSQL, whose upserts have the same shape: the proposed row
    (``excluded``) carries the statement's one clock reading in ``locked_at_ms``. The update
    runs only when the old grant has expired (a new grant: new secret, version + 1) or
    belongs to the same owner (a refresh: same secret and version); otherwise no row comes
    back and the caller lost.
    """
    ex = stmt.excluded
    expired = (t.c.locked_at_ms + t.c.timeout_ms) <= ex.locked_at_ms
    mine = t.c.owner_key == ex.owner_key
    upsert: sa.Executable = stmt.on_conflict_do_update(
        index_elements=[t.c.resource],
        set_={
            "secret": sa.case((expired, ex.secret), else_=t.c.secret),
            "version": sa.case((expired, t.c.version + 1), else_=t.c.version),
            "owner_key": ex.owner_key,
            "owner_id": ex.owner_id,
            "owner_name": ex.owner_name,
            "owner_url": ex.owner_url,
            "stealable": ex.stealable,
            "infinite": ex.infinite,
            "timeout_ms": ex.timeout_ms,
            "locked_at_ms": ex.locked_at_ms,
        },
        where=sa.or_(expired, mine),
    ).returning(*t.c)
    return upsert


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
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    _configured.add(engine)
