"""A page of live locks, in resource order (the ``GET /@locks`` query)."""

from __future__ import annotations

import sqlalchemy as sa

from ..resources import descendant_bounds
from .base import LockRow
from .sql import SQLStore, live_at


def live_page(
    store: SQLStore, *, prefix: str | None, after: str | None, owner_key: str | None, limit: int,
) -> list[LockRow]:
    """At most ``limit`` live rows on ``prefix`` or below it, owned by ``owner_key`` (when
    given), whose resource sorts after ``after``; one indexed range query."""
    t = store.table
    stmt = sa.select(t).where(live_at(t, store.now_expression()))  # never a tombstone
    if prefix is not None:
        low, high = descendant_bounds(prefix)
        stmt = stmt.where(
            sa.or_(t.c.resource == prefix, sa.and_(t.c.resource > low, t.c.resource < high))
        )
    if after is not None:
        stmt = stmt.where(t.c.resource > after)
    if owner_key is not None:
        stmt = stmt.where(t.c.owner_key == owner_key)
    stmt = stmt.order_by(t.c.resource).limit(limit)
    with store._translated(), store.single_statement() as conn:
        return [LockRow(*row) for row in conn.execute(stmt)]
