"""The acquisition upsert shared by SQLite and PostgreSQL.

Both speak ``INSERT ... SELECT ... ON CONFLICT (resource) DO UPDATE ... WHERE ... RETURNING``;
they differ only in the insert construct and in how the proposed row reads the clock once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam

from .base import AcquireRequest, LockRow
from .driver import Session
from .sql import _row, _shaped, ended_at, overlap_at, overlap_params

#: The columns of the proposed row, in the order :func:`proposed_values` yields them.
PROPOSED_COLUMNS = [
    "resource", "secret", "owner_key", "owner_id", "owner_name", "owner_url",
    "stealable", "infinite", "timeout_ms", "locked_at_ms", "version",
]


def proposed_values(now: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    """The proposed row as bind parameters (named as in :class:`AcquireRequest`), with the
    statement's one clock reading ``now`` as ``locked_at_ms`` and version 1."""
    return [
        bindparam("resource", type_=sa.String),
        bindparam("secret", type_=sa.String),
        bindparam("owner_key", type_=sa.String),
        bindparam("owner_id", type_=sa.String),
        bindparam("owner_name", type_=sa.String),
        bindparam("owner_url", type_=sa.String),
        bindparam("stealable", type_=sa.Boolean),
        bindparam("infinite", type_=sa.Boolean),
        bindparam("timeout_ms", type_=sa.BigInteger),
        now,
        sa.literal(1, sa.BigInteger),
    ]


class OnConflictUpsert:
    """Store mixin: acquisition by one ``ON CONFLICT ... RETURNING`` statement, whose own
    result names the winner (a row back: won or refreshed; no row: someone else holds it)."""

    table: sa.Table
    _upsert: Any
    #: Statements of :meth:`upsert_unless_overlap`, per (ancestors, infinite).
    _at_once_by_shape: dict[tuple[int, bool], sa.Executable]

    def insert(self, table: sa.Table) -> Any:
        """The dialect's ``insert()`` construct (it has ``on_conflict_do_update``)."""
        raise NotImplementedError

    def proposed_source(self) -> sa.Select[Any]:
        """``SELECT`` of :func:`proposed_values`, the clock read once (see subclasses)."""
        raise NotImplementedError

    def build_upsert(self, where: sa.ColumnElement[bool] | None = None) -> sa.Executable:
        """The upsert, proposing its row only ``where`` that holds (default: always)."""
        source = self.proposed_source()
        if where is not None:
            source = source.where(where)
        stmt = self.insert(self.table).from_select(PROPOSED_COLUMNS, source)
        return upsert_on_conflict(self.table, stmt)

    def run_upsert(self, conn: Session, params: dict[str, Any]) -> LockRow | None:
        return _row(conn.first(self._upsert, params))

    def upsert_unless_overlap(self, conn: Session, request: AcquireRequest) -> Any:
        """Run the upsert, proposing its row only when no overlapping lock (see
        :func:`~flask_locking.store.sql.overlap_at`) is live at the statement's clock (a
        whole acquisition in one statement, one statement per shape of request); return
        the cursor (or :class:`~flask_locking.store.driver.Batched`), whose one row (if any)
        is the won grant."""
        count, infinite = len(request.ancestors), request.infinite

        def build() -> sa.Executable:
            if not count and not infinite:
                # A root key's depth-0 lock: nothing can overlap it (and an EXISTS over a
                # condition SQLAlchemy folds to false names no table: a syntax error).
                return self.build_upsert()
            other = self.table.alias("overlap")
            now = self.now_expression()  # type: ignore[attr-defined]
            return self.build_upsert(~sa.exists().where(overlap_at(other, count, infinite, now)))

        stmt, kept = _shaped(self._at_once_by_shape, (count, infinite), build)
        params = {**request.proposed(), **overlap_params(request)}
        return conn.run(stmt, params, once=not kept)

    def insert_ignore(self, table: sa.Table) -> sa.Insert:
        return self.insert(table).on_conflict_do_nothing()  # type: ignore[no-any-return]


def upsert_on_conflict(t: sa.Table, stmt: Any) -> sa.Executable:
    """``ON CONFLICT (resource) DO UPDATE ... WHERE <expired or mine> RETURNING *``.

    The proposed row (``excluded``) carries the statement's one clock reading in
    ``locked_at_ms``. The update runs only when the old grant has expired (a new grant: new
    secret, version + 1) or belongs to the same owner (a refresh: same secret and version);
    otherwise no row comes back and the caller lost.
    """
    ex = stmt.excluded
    expired = ended_at(t, ex.locked_at_ms)
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
            # The owner locking again refreshes: it may strengthen the lock (unstealable,
            # infinite depth: checked for overlaps as usual) but never weaken it.
            "stealable": sa.case(
                (expired, ex.stealable), else_=sa.and_(t.c.stealable, ex.stealable)
            ),
            "infinite": sa.case((expired, ex.infinite), else_=sa.or_(t.c.infinite, ex.infinite)),
            "timeout_ms": ex.timeout_ms,
            "locked_at_ms": ex.locked_at_ms,
        },
        where=sa.or_(expired, mine),
    ).returning(*t.c)
    return upsert
