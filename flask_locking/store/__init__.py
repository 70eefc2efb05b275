"""Lock stores, chosen by URI scheme (docs/stores.rst).

Built in: ``sqlite``, ``postgresql``, ``mysql``/``mariadb`` (SQLAlchemy URLs, with any
driver) and ``memory`` (one process only). A host adds its own with :func:`register_store`.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import HeldElsewhere
from .base import AcquireRequest, AcquireResult, EventFor, LockRow, LockStore, StoreOptions
from .eventlog import ChangeListener, EventLog, EventRow, NewEvent
from .memory import MemoryStore
from .mysql import MySQLStore
from .postgresql import PostgreSQLStore
from .registry import register_store, registered_schemes, store_class_for, store_from_uri
from .sql import SQLStore
from .sql_engine import engine_for_uri
from .sqlite import SQLiteStore

__all__ = [
    "AcquireRequest",
    "AcquireResult",
    "ChangeListener",
    "EventFor",
    "EventLog",
    "EventRow",
    "HeldElsewhere",
    "LockRow",
    "LockStore",
    "MemoryStore",
    "NewEvent",
    "SQLStore",
    "StoreOptions",
    "create_store",
    "engine_for_uri",
    "register_store",
    "registered_schemes",
    "store_class_for",
    "store_from_uri",
]

#: SQL store class by SQLAlchemy dialect name.
BACKENDS: dict[str, type[SQLStore]] = {
    name: cls for cls in (SQLiteStore, PostgreSQLStore, MySQLStore) for name in cls.dialect_names
}

for _builtin in (SQLiteStore, PostgreSQLStore, MySQLStore, MemoryStore):
    register_store(_builtin)


def create_store(
    engine: Engine, *, metadata: sa.MetaData | None = None, table_name: str = "locking_locks",
    timeout: float = 5.0,
) -> SQLStore:
    """The SQL store for ``engine``'s dialect, keeping its tables on ``metadata``: the class
    registered for the dialect's scheme when it is a SQL store serving that dialect (a
    host's subclass replacing a built-in one), else the built-in class."""
    name = engine.dialect.name
    try:
        registered = store_class_for(f"{name}://")
    except ValueError:
        registered = None
    if registered is not None and issubclass(registered, SQLStore) and (
        name in registered.dialect_names
    ):
        cls: type[SQLStore] | None = registered
    else:
        cls = BACKENDS.get(name)
    if cls is None:
        raise ValueError(f"No flask-locking store for the {engine.dialect.name!r} dialect.")
    metadata = metadata if metadata is not None else sa.MetaData()
    return cls(engine, metadata, table_name, timeout=timeout)
