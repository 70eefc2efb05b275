"""PostgreSQL (psycopg 3): one ``INSERT ... ON CONFLICT ... RETURNING`` decides the winner.

Time is ``clock_timestamp()`` read once inside the statement, so app hosts whose clocks
disagree still agree on expiry. Infinite-depth locks are kept apart from overlapping locks on
other rows with transaction-scoped advisory locks: shared on every ancestor, exclusive on
the key of an infinite request; taken root first, so two acquirers never wait in a cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from .base import AcquireRequest, LockRow
from .sql import SQLStore
from .sqlite import upsert_on_conflict

_ADVISORY = sa.text(
    "SELECT count(CASE WHEN k.n <= :shared"
    " THEN pg_advisory_xact_lock_shared(hashtextextended(:space || k.key, 0))::text"
    " ELSE pg_advisory_xact_lock(hashtextextended(:space || k.key, 0))::text END)"
    " FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n)"
)

# SQLSTATEs a retry resolves: serialization_failure, deadlock_detected.
_RETRYABLE = {"40001", "40P01"}


class PostgreSQLStore(SQLStore):
    """Lock store on PostgreSQL (READ COMMITTED)."""

    dialect_names = ("postgresql",)

    def now_expression(self) -> sa.ColumnElement[int]:
        return sa.cast(
            sa.func.floor(sa.extract("epoch", sa.func.clock_timestamp()) * 1000), sa.BigInteger
        )

    def build_upsert(self) -> sa.Executable:
        t = self.table
        clock = sa.select(self.now_expression().label("now")).subquery("clock")
        source = sa.select(
            bindparam("resource", type_=sa.String),
            bindparam("secret", type_=sa.String),
            bindparam("owner_key", type_=sa.String),
            bindparam("owner_id", type_=sa.String),
            bindparam("owner_name", type_=sa.String),
            bindparam("owner_url", type_=sa.String),
            bindparam("stealable", type_=sa.Boolean),
            bindparam("infinite", type_=sa.Boolean),
            bindparam("timeout_ms", type_=sa.BigInteger),
            clock.c.now,
            sa.literal(1, sa.BigInteger),
        ).select_from(clock)
        stmt = pg_insert(t).from_select(
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

    def serialize_hierarchy(self, conn: Connection, request: AcquireRequest) -> None:
        keys = list(request.ancestors)
        if request.infinite:
            keys.append(request.resource)
        if not keys:
            return
        conn.execute(
            _ADVISORY,
            {"keys": keys, "shared": len(request.ancestors), "space": self.table.name + ":"},
        )

    @contextlib.contextmanager
    def single_statement(self) -> Iterator[Connection]:
        with self._autocommit.connect() as conn:
            yield conn

    def is_retryable(self, error: exc.DBAPIError) -> bool:
        return getattr(error.orig, "sqlstate", None) in _RETRYABLE

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        return pg_insert(table).on_conflict_do_nothing()

    def _build_statements(self) -> None:
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        super()._build_statements()
