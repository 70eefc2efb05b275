"""SQLAlchemy engines for the SQL stores: timeouts, pools, and a fresh start after a fork.

:meth:`flask_locking.store.sql.SQLStore.from_uri` builds its engine here; nothing else in
flask-locking creates one.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from .batch import MULTI_STATEMENTS

#: The MySQL protocol's ``CLIENT.FOUND_ROWS`` flag (PyMySQL's ``constants.CLIENT``).
_FOUND_ROWS = 2

#: Every engine built here, so that a forked worker drops the connections it inherited
#: (they belong to the parent; sharing a socket between two processes corrupts both).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: Driver connection arguments that bound how long a dead or busy server can make us wait.
#: The user's own settings win: see :func:`_merge_connect_args`.
_CONNECT_ARGS: dict[str, Any] = {
    "sqlite": lambda timeout: {},
    "postgresql": lambda timeout: {
        "connect_timeout": max(1, int(timeout)),
        "options": (
            f"-c statement_timeout={int(timeout * 1000)} -c lock_timeout={int(timeout * 1000)}"
        ),
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


def engine_for_uri(
    uri: str, *, timeout: float = 5.0, options: dict[str, Any] | None = None
) -> Engine:
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
    if backend not in _CONNECT_ARGS:
        raise ValueError(
            f"flask-locking's SQL stores serve sqlite, postgresql and mysql/mariadb URIs, "
            f"not {backend!r}."
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
    _ENGINES.add(engine)
    return engine


def _merge_connect_args(
    backend: str, url: URL, user_args: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Our driver arguments under the user's (URL query, then ``connect_args``)."""
    ours: dict[str, Any] = dict(_CONNECT_ARGS[backend](timeout))
    if backend in ("mysql", "mariadb") and url.get_driver_name() == "pymysql":
        ours["client_flag"] = _pymysql_client_flag()
    merged = dict(user_args)
    for name, value in ours.items():
        user_value = user_args.get(name, _first(url.query.get(name)))
        if name == "options":
            # libpq applies -c settings in order: the user's, after ours, win.
            merged[name] = f"{value} {user_value}" if user_value else value
        elif user_value is None:
            merged[name] = value
    return merged


def _pymysql_client_flag() -> int:
    """PyMySQL's client flags for the store's engine: FOUND_ROWS, as SQLAlchemy sets it (the
    stores' UPDATEs count matched rows), and MULTI_STATEMENTS, so that a store operation
    sends statements that do not wait on each other's results in one round trip
    (:meth:`~flask_locking.store.driver.Session.run_together`; every value in them is bound
    by the driver). A ``client_flag`` the user gives replaces both: statements then go one
    per round trip, as on any other connection."""
    return _FOUND_ROWS | MULTI_STATEMENTS


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



def is_memory(url: URL) -> bool:
    """True for a SQLite URL naming an in-memory database (``sqlite://``, ``:memory:``)."""
    return (url.database or "") in ("", ":memory:") or url.query.get("mode") == "memory"


def memory_engine_options() -> dict[str, Any]:
    """Engine options that make an in-memory SQLite URL **one** database per engine.

    SQLAlchemy's default gives every thread its own connection, hence its own empty
    database: a lock taken in one request thread would not exist in the next. One
    connection, shared by every thread (the store makes their transactions take turns),
    is one database for the whole process, gone when the process ends.
    """
    return {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
