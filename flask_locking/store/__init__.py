"""Lock stores. :func:`create_store` picks the backend from the engine's dialect."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

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
#: The user's own settings win: see :func:`_merge_connect_args`.
_CONNECT_ARGS: dict[str, Any] = {
    "sqlite": lambda timeout: {},
    "postgresql": lambda timeout: {
        "connect_timeout": max(1, int(timeout)),
        "options": f"-c statement_timeout={int(timeout * 1000)} -c lock_timeout={int(timeout * 1000)}",
    },
    # The socket timeouts outlast the server's lock wait (a whole second more): a client that
    # gave up first would leave its statement waiting on the server, to act after we answered
    # "unavailable" (a release reported failed that then happens).
    "mysql": lambda timeout: {
        "connect_timeout": max(1, int(timeout)),
        "read_timeout": _mysql_lock_wait(timeout) + 1,
        "write_timeout": _mysql_lock_wait(timeout) + 1,
    },
}
_CONNECT_ARGS["mariadb"] = _CONNECT_ARGS["mysql"]


def _mysql_lock_wait(timeout: float) -> int:
    """``innodb_lock_wait_timeout`` for ``LOCKING_STORE_TIMEOUT`` (whole seconds, at least 1)."""
    return max(1, int(timeout))


def engine_for_uri(uri: str, *, timeout: float = 5.0, options: dict[str, Any] | None = None) -> Engine:
    """A SQLAlchemy engine for the lock store, with timeouts and pre-ping set.

    ``options`` (the host's engine options, then ``LOCKING_ENGINE_OPTIONS``) override the
    defaults chosen here. What the user put in the URL or in ``connect_args`` is theirs:
    our timeouts are merged into a PostgreSQL ``options`` string (the user's ``-c``
    settings after ours, so theirs win), a MySQL ``init_command`` is left alone (our lock
    wait timeout is set on each new connection after it, unless it names that variable),
    and a timeout the user gave is never replaced by ours.
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
    given = dict(options or {})
    user_args = dict(given.pop("connect_args", None) or {})
    connect_args = _merge_connect_args(backend, url, user_args, timeout)
    if backend == "sqlite" and is_memory(url):
        memory = memory_engine_options()
        connect_args.update(memory.pop("connect_args"))
        kwargs.update(memory)
    kwargs.update(given)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
    if backend in ("mysql", "mariadb"):
        init = _first(url.query.get("init_command")) or str(connect_args.get("init_command") or "")
        if "innodb_lock_wait_timeout" not in init.lower():
            sa.event.listen(engine, "connect", _lock_wait_setter(_mysql_lock_wait(timeout)))
    return engine


def _merge_connect_args(
    backend: str, url: URL, user_args: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Our driver arguments under the user's (URL query, then ``connect_args``)."""
    ours: dict[str, Any] = dict(_CONNECT_ARGS[backend](timeout))
    merged = dict(user_args)
    for name, value in ours.items():
        user_value = user_args.get(name, _first(url.query.get(name)))
        if name == "options":
            # libpq applies -c settings in order: the user's, after ours, win.
            merged[name] = f"{value} {user_value}" if user_value else value
        elif user_value is None:
            merged[name] = value
    return merged


def _first(value: Any) -> str | None:
    """A URL query value (a tuple when repeated: the last one, as libpq reads it)."""
    if isinstance(value, tuple):
        return str(value[-1]) if value else None
    return None if value is None else str(value)


def _lock_wait_setter(seconds: int) -> Any:
    def set_lock_wait(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
        finally:
            cursor.close()

    return set_lock_wait


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
