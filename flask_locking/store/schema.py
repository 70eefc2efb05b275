"""The lock table and the small key/value table that holds the shared HMAC key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Integer, MetaData, String, Table
from sqlalchemy.dialects import mysql, postgresql

from ..resources import MAX_RESOURCE_LENGTH

# Resource keys are compared byte by byte: case-sensitive, and in an order where the range
# ``(key + "/", key + "0")`` is exactly the keys below ``key``. SQLite already compares
# that way; PostgreSQL needs the "C" collation and MySQL/MariaDB a binary one.
ResourceKey = (
    String(MAX_RESOURCE_LENGTH)
    .with_variant(postgresql.VARCHAR(MAX_RESOURCE_LENGTH, collation="C"), "postgresql")
    .with_variant(
        mysql.VARCHAR(MAX_RESOURCE_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"),
        "mysql",
        "mariadb",
    )
)


def lock_table(metadata: MetaData, name: str) -> Table:
    """The lock table on ``metadata`` (reused when it is already defined there)."""
    return _defined(
        metadata,
        name,
        Column("resource", ResourceKey, primary_key=True),
        # Random per-grant secret; the token is an HMAC of it, never stored.
        Column("secret", String(64), nullable=False),
        # "anonymous" or "u:<id>": the identity compared for ownership.
        Column("owner_key", String(300), nullable=False),
        *_holder_columns(),
        # Fencing counter: +1 at every new grant of this resource; the row is never
        # deleted, so it never goes back.
        Column("version", BigInteger, nullable=False),
        # Owner names and ids are any Unicode, whatever the database's default charset.
        mysql_charset="utf8mb4",
    )


def _holder_columns() -> list[Column[Any]]:
    """Who holds a grant and on what terms: the columns a lock row and an event share (new
    objects at each call: a column belongs to one table)."""
    return [
        Column("owner_id", String(255)),
        Column("owner_name", String(255)),
        Column("owner_url", String(1024)),
        Column("stealable", Boolean, nullable=False),
        Column("infinite", Boolean, nullable=False),
        # A grant is live while locked_at_ms + timeout_ms > the database clock. Keeping one
        # instant (locked_at) instead of two means every statement reads the clock once.
        Column("timeout_ms", BigInteger, nullable=False),
        Column("locked_at_ms", BigInteger, nullable=False),
    ]


def meta_table(metadata: MetaData, lock_table_name: str) -> Table:
    """Key/value settings shared by every process using the store (the generated HMAC key)."""
    name = f"{lock_table_name}_meta"
    return _defined(
        metadata,
        name,
        Column("name", String(64), primary_key=True),
        Column("value", String(255), nullable=False),
        Column("schema_version", Integer, nullable=False, default=1),
        mysql_charset="utf8mb4",
    )


def event_table(metadata: MetaData, lock_table_name: str) -> Table:
    """The lock events (acquired, refreshed, released, stolen, expired), kept for replay.

    ``id`` is handed out by :func:`event_head_table`'s counter inside the writing
    transaction, so ids become visible in id order: a reader that has seen id ``n`` will
    never later find a smaller one (an autoincrement id can commit out of order).
    """
    name = f"{lock_table_name}_events"
    return _defined(
        metadata,
        name,
        Column(
            "id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        Column("event", String(16), nullable=False),
        Column("resource", ResourceKey, nullable=False),
        Column("version", BigInteger, nullable=False),
        # Database clock (epoch ms) when the event was written.
        Column("time_ms", BigInteger, nullable=False, index=True),
        # The lock the event is about, as it was (never its secret).
        *_holder_columns(),
        # Who released or stole it, when known.
        Column("by_id", String(255)),
        Column("by_name", String(255)),
        mysql_charset="utf8mb4",
    )


def event_head_table(metadata: MetaData, lock_table_name: str) -> Table:
    """One row: the id of the last event written. Writers increment it first, so its row
    lock orders event ids by commit; readers never need it."""
    name = f"{lock_table_name}_event_head"
    return _defined(
        metadata,
        name,
        Column("name", String(16), primary_key=True),
        Column("last_id", BigInteger, nullable=False),
        mysql_charset="utf8mb4",
    )


def _defined(metadata: MetaData, name: str, *columns: Any, **options: Any) -> Table:
    """The table ``name`` on ``metadata``: the one already defined there (a host's metadata
    seen twice, a second app on one ``db``), else a new one with ``columns``."""
    existing = metadata.tables.get(name)
    if existing is not None:
        return existing
    return Table(name, metadata, *columns, **options)
