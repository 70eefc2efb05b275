"""Idle driver connections kept by the store between its hot operations.

Every hot operation (acquire, refresh, release, the guard's lookup) used to check a
connection out of SQLAlchemy's pool and back in. On PostgreSQL and MariaDB that costs round
trips on every operation (the pre-ping, and on MariaDB the rollback on return), and in
Python a few dozen microseconds of pool bookkeeping. The :class:`ConnectionKeeper` parks a
connection that finished an operation cleanly (committed or rolled back: no transaction
open) in a short LIFO list, and the next operation of **any** thread takes it from there:

* Nothing is kept per thread, so no thread can starve another: a parked connection is idle
  and free for whoever comes next. The list is capped at the pool's size minus one, so
  SQLAlchemy's own checkouts (listing, event reads, DDL) always find room in the pool.
* A connection parked for longer than ``ping_after`` seconds is pinged when taken again
  (the engine's ``pool_pre_ping`` check, only when the engine has it on), so a server
  restart or an idle-connection timeout costs no request. Within that second it is trusted,
  as a checked-out connection is trusted between statements; one that broke meanwhile
  fails its operation (the store answers "unavailable"), is invalidated and never parked
  again.
* What the pool checks at checkout applies to a parked connection too: one older than
  ``pool_recycle``, older than a disconnect the pool saw (SQLAlchemy then invalidates every
  older connection), or from before the engine was disposed goes back to its pool instead.
* Pools that are not a :class:`~sqlalchemy.pool.QueuePool` (``NullPool``: the user asked
  for no pooling, e.g. behind PgBouncer; ``StaticPool``: SQLite in memory) keep nothing.
* A forked child never touches the parent's parked connections (their sockets are the
  parent's): it drops the list and keeps the objects referenced, so that no finaliser
  closes or resets them on the shared socket.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import QueuePool

#: Parked connections a forked child inherited: referenced for the life of the child so that
#: garbage collection never closes (PyMySQL: sends QUIT) or resets them on the parent's socket.
_INHERITED: list[Any] = []


class ConnectionKeeper:
    """Checks driver connections out of ``engine``'s pool for hot operations and keeps the
    idle ones for the next operation (see the module doc).

    ``is_idle(dbapi_connection)`` tells whether a connection has no transaction open (only
    such a connection is parked; any other goes back to the pool, which resets it).
    """

    def __init__(
        self,
        engine: sa.Engine,
        is_idle: Callable[[Any], bool],
        *,
        ping_after: float = 1.0,
    ) -> None:
        self.engine = engine
        self.is_idle = is_idle
        self.ping_after = ping_after
        pool = engine.pool
        #: How many idle connections are kept at most (0: keep nothing).
        self.limit = max(0, pool.size() - 1) if isinstance(pool, QueuePool) else 0
        self._ping = bool(getattr(pool, "_pre_ping", False))
        self._idle: list[tuple[Any, float]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def checkout(self) -> Any:
        """A pool-proxied connection for one operation: a parked one if there is one (pinged
        first when it sat longer than ``ping_after``), else one from the pool."""
        while self.limit:
            if self._pid != os.getpid():
                self._forked()
            with self._lock:
                if not self._idle:
                    break
                connection, since = self._idle.pop()
            if self._stale(connection):
                _discard(connection)
                continue
            if not self._ping or time.monotonic() - since < self.ping_after:
                return connection
            if self._alive(connection):
                return connection
        return self.engine.raw_connection()

    def _stale(self, connection: Any) -> bool:
        """Whether the pool would not hand ``connection`` out again as it is: the engine
        was disposed since (a new pool, which does not count this connection), the
        connection is older than ``pool_recycle``, or the pool invalidated every connection
        older than a disconnect it saw. (SQLAlchemy applies these at checkout, which a
        parked connection skips; the attributes read are the pool's own.)"""
        pool = self.engine.pool
        if getattr(connection, "_pool", pool) is not pool:
            return True
        record = getattr(connection, "_connection_record", None)
        if record is None:
            return False
        started = record.starttime
        recycle = getattr(pool, "_recycle", -1)
        if recycle > -1 and time.time() - started > recycle:
            return True
        return bool(getattr(pool, "_invalidate_time", 0) > started)

    def checkin(self, connection: Any) -> None:
        """Park ``connection`` after its operation, or return it to the pool when it is
        broken, inside a transaction, from before a fork, or not wanted (list full)."""
        if self.limit and connection.is_valid and self._pid == os.getpid():
            if self._stale(connection):
                _discard(connection)
                return
            try:
                idle = self.is_idle(connection.dbapi_connection)
            except Exception:  # noqa: BLE001 - a connection in doubt goes back to the pool
                idle = False
            if idle:
                with self._lock:
                    if len(self._idle) < self.limit:
                        self._idle.append((connection, time.monotonic()))
                        return
        connection.close()

    def close(self) -> None:
        """Return every parked connection to the pool (before the engine is disposed)."""
        if self._pid != os.getpid():
            self._forked()
            return
        with self._lock:
            parked, self._idle = self._idle, []
        for connection, _since in parked:
            connection.close()

    @property
    def parked(self) -> int:
        """How many idle connections are parked now."""
        return len(self._idle)

    def _alive(self, connection: Any) -> bool:
        """Ping a connection that sat idle; drop it (invalidated) when the ping fails."""
        try:
            alive = self.engine.dialect.do_ping(connection.dbapi_connection)
        except Exception as error:  # noqa: BLE001 - any failure: the connection is gone
            connection.invalidate(error)
            connection.close()
            return False
        if not alive:
            connection.invalidate()
            connection.close()
        return bool(alive)

    def _forked(self) -> None:
        """In a forked child: forget the parent's parked connections without closing them.
        (The parent's lock is not taken: a thread of the parent may have held it at the fork,
        and that thread does not exist here.)"""
        _INHERITED.extend(self._idle)
        self._idle = []
        self._lock = threading.Lock()
        self._pid = os.getpid()


def _discard(connection: Any) -> None:
    """Close a connection that must not be used again (too old, or of a disposed pool,
    which would otherwise keep it open until garbage collection) and hand it back."""
    connection.invalidate()
    connection.close()
