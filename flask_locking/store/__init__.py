"""Lock stores. :func:`create_store` picks the backend from the engine's dialect."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from .base import AcquireRequest, AcquireResult, HeldElsewhere, LockRow, LockStore
from .mysql import MySQLStore
from .postgresql import PostgreSQLStore
from .sql import SQLStore
from .sqlite import SQLiteStore, is_memory, memory_engine_options

__all__ = [
    "AcquireRequest",
    "AcquireResult",
    "HeldElsewhere",
    "LockRow",
    "LockStore",
    "SQLStore",
    "create_store",
    "engine_for_uri",
]

#: Store class by SQLAlchemy dialect name.
BACKENDS: dict[str, type[SQLStore]] = {
    name: cls for cls in (SQLiteStore, PostgreSQLStore, MySQLStore) for name in cls.dialect_names
}

#: Driver connection arguments that bound how long a dead or busy server can make us wait.
_CONNECT_ARGS: dict[str, Any] = {
    "sqlite": lambda timeout: {},
    "postgresql": lambda timeout: {
        "connect_timeout": max(1, int(timeout)),
        "options": f"-c statement_timeout={int(timeout * 1000)} -c lock_timeout={int(timeout * 1000)}",
    },
    "mysql": lambda timeout: {
        "connect_timeout": max(1, int(timeout)),
        "read_timeout": max(1, int(timeout)),
        "write_timeout": max(1, int(timeout)),
        "init_command": f"SET SESSION innodb_lock_wait_timeout = {max(1, int(timeout))}",
    },
}
_CONNECT_ARGS["mariadb"] = _CONNECT_ARGS["mysql"]


def engine_for_uri(uri: str, *, timeout: float = 5.0, options: dict[str, Any] | None = None) -> Engine:
    """A SQLAlchemy engine for the lock store, with timeouts and pre-ping set.

    ``options`` (``LOCKING_ENGINE_OPTIONS``) override the defaults chosen here.
    """
    url = make_url(uri)
    backend = url.get_backend_name()
    if backend not in BACKENDS:
        raise ValueError(
            f"flask-locking supports sqlite, postgresql and mysql/mariadb URIs, not {backend!r}."
        )
    if backend == "sqlite" and url.database not in (None, "", ":memory:"):
        directory = os.path.dirname(os.path.abspath(url.database))
        os.makedirs(directory, exist_ok=True)
    kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_timeout": timeout}
    if backend == "sqlite":
        kwargs.pop("pool_timeout")
        # A file connection cannot drop: a ping would only add a statement to every checkout.
        kwargs.pop("pool_pre_ping")
    else:
        kwargs["isolation_level"] = "READ COMMITTED"
    connect_args = dict(_CONNECT_ARGS[backend](timeout))
    if backend == "sqlite" and is_memory(url):
        memory = memory_engine_options()
        connect_args.update(memory.pop("connect_args"))
        kwargs.update(memory)
    given = dict(options or {})
    connect_args.update(given.pop("connect_args", {}))
    kwargs.update(given)
    return sa.create_engine(url, connect_args=connect_args, **kwargs)


def create_store(
    engine: Engine, *, metadata: sa.MetaData | None = None, table_name: str = "locking_locks",
    timeout: float = 5.0,
) -> SQLStore:
    """The store for ``engine``'s backend, keeping its tables on ``metadata``."""
    cls = BACKENDS.get(engine.dialect.name)
    if cls is None:
        raise ValueError(f"No flask-locking store for the {engine.dialect.name!r} dialect.")
    metadata = metadata if metadata is not None else sa.MetaData()
    if cls is SQLiteStore:
        store: SQLStore = SQLiteStore(engine, metadata, table_name, busy_timeout=timeout)
    else:
        store = cls(engine, metadata, table_name)
    store.retry_budget = timeout
    return store
