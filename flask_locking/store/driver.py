"""Hot store operations on the driver connection.

SQLAlchemy builds and compiles every statement once (:class:`Compiled`); a
:class:`Session` runs them on the DBAPI cursor of one pooled connection. What is skipped is
SQLAlchemy's per-execution work (execution context, result wrapping), not the pool:
the connection is checked out and in as before, so pre-ping, the PostgreSQL watchdog, fork
disposal and invalidation of a broken connection still apply. Driver errors are raised as
SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError` subclasses, as a SQLAlchemy execution
would raise them, and the engine's ``before_cursor_execute`` / ``after_cursor_execute``
listeners (SQL logging, tracing, the tests' statement counters) still see every statement:
each gets a :class:`ListenerContext` as its ``context`` (tracers such as Sentry's and
OpenTelemetry's keep their span on it), and a ``retval=True`` listener's statement and
parameters are the ones run. A statement that fails fires no ``handle_error`` event.

:meth:`Session.together` sends several statements in one driver call (psycopg: one
simple-query string, bound client-side by psycopg's own literal adaptation, each statement
prepared once per connection, as psycopg prepares those it runs often). The listeners
still see each statement on its own: every ``before_cursor_execute`` fires (in order) before
the call, every ``after_cursor_execute`` after it; a failed call fires no ``after``.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import re
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Dialect

_NONE: Mapping[str, Any] = {}
#: psycopg's ExecStatus.TUPLES_OK: a result that has rows (possibly none).
_TUPLES_OK = 2
#: psycopg's TransactionStatus.IDLE: no transaction open.
_IDLE = 0
#: psycopg: the statements :meth:`Session.together` prepared on each connection (by name);
#: ``None``: that connection is sent plain statements (its ``prepare_threshold`` is
#: ``None``, e.g. behind PgBouncer, or its prepared statements went away).
_PREPARED: weakref.WeakKeyDictionary[Any, set[str] | None] = weakref.WeakKeyDictionary()
#: psycopg: for a driver SQL, its prepared statement's name, ``PREPARE``, its ``EXECUTE``
#: template and the order of its binds (see :func:`_plan`).
_PLANS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {}
_NAMES = itertools.count()
#: A pyformat bind (``%(name)s``) or an escaped ``%`` in SQL compiled for psycopg.
_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")


class ListenerContext:
    """The ``context`` argument of the cursor-execute events for a statement run here:
    what listeners read of SQLAlchemy's execution context (``dialect``, ``engine``,
    ``cursor``, ``statement``, ``parameters``, ``executemany``), and room for the
    attributes they set on it."""

    executemany = False

    def __init__(self, session: Session, cursor: Any, statement: str, parameters: Any) -> None:
        self.dialect = session.dialect
        self.engine = session.engine
        self.root_connection = session.proxy
        self.cursor = cursor
        self.statement = statement
        self.parameters = parameters


class Compiled:
    """One statement compiled for one dialect: its SQL and how to bind a parameter dict."""

    __slots__ = ("constants", "order", "pick", "processors", "sql")

    def __init__(self, statement: sa.Executable, dialect: Dialect) -> None:
        compiled = statement.compile(  # type: ignore[attr-defined]
            dialect=dialect, compile_kwargs={"render_postcompile": True}
        )
        self.sql: str = compiled.string
        binds = compiled.binds
        processors: dict[str, Callable[[Any], Any]] = dict(compiled._bind_processors)
        #: Values fixed in the statement itself (literals, ``values(x=1)``), processed for
        #: the driver once, here.
        self.constants = {
            name: (processors[name](bind.effective_value) if name in processors
                   else bind.effective_value)
            for name, bind in binds.items() if not bind.required
        }
        #: The type processors a caller's value goes through (by bind name).
        self.processors = tuple(processors.items())
        self.order: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if compiled.positional else None
        )
        #: Builds the positional tuple from the bound values (C-speed ``itemgetter``).
        self.pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None
        order = self.order
        if order is not None:
            if len(order) > 1:
                self.pick = operator.itemgetter(*order)
            else:
                self.pick = lambda values: tuple(values[name] for name in order)

    def bind(self, params: Mapping[str, Any]) -> Any:
        """The driver's parameters (a tuple for positional paramstyles, else a dict)."""
        values: Mapping[str, Any] = params
        if self.processors:
            processed = None
            for name, process in self.processors:
                if name in params:
                    if processed is None:
                        processed = dict(params)
                    processed[name] = process(params[name])
            if processed is not None:
                values = processed
        if self.constants:
            values = {**self.constants, **values}
        if self.pick is not None:
            return self.pick(values)
        return values


class Batched:
    """What a statement run in :meth:`Session.together` gives back: its rows and rowcount,
    read from the driver once the block has sent the batch (a cursor's ``fetchall`` and
    ``rowcount``, for :func:`first` and the callers of :meth:`Session.run`)."""

    __slots__ = ("rowcount", "rows")

    def __init__(self) -> None:
        self.rows: list[Any] | None = None
        self.rowcount = -1

    def fetchall(self) -> list[Any]:
        if self.rows is None:
            raise RuntimeError("a batched statement's rows are read after its block")
        return self.rows

    def take(self, cursor: Any) -> None:
        """Keep the current result of ``cursor``."""
        self.rows = list(cursor.fetchall()) if cursor.description is not None else []
        self.rowcount = cursor.rowcount


def _plan(sql: str) -> tuple[str, str, str, tuple[str, ...]] | None:
    """The prepared statement of ``sql`` (psycopg's pyformat): its name, its ``PREPARE``
    (binds numbered in order of first use), the ``EXECUTE`` template that passes the binds
    (as psycopg's literals) and their order. ``None`` past 512 statements: the rest are
    sent as plain statements (a store has a few dozen)."""
    plan = _PLANS.get(sql)
    if plan is None:
        if len(_PLANS) >= 512:
            return None
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            bind = match.group(1)
            if bind is None:
                return "%"
            if bind not in order:
                order.append(bind)
            return f"${order.index(bind) + 1}"

        body = _PLACEHOLDER.sub(number, sql)
        name = f"flask_locking_{next(_NAMES)}"
        args = ", ".join(["%s"] * len(order))
        execute = f"EXECUTE {name}({args})" if order else f"EXECUTE {name}"
        plan = _PLANS.setdefault(sql, (name, f"PREPARE {name} AS {body}", execute, tuple(order)))
    return plan


def first(cursor: Any) -> Any:
    """The first row of what ``cursor`` ran, or ``None``. Every row is read: SQLite keeps a
    ``RETURNING`` statement (and its write) open until its last row."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


class Session:
    """One store operation on one checked-out driver connection (see the module doc)."""

    __slots__ = (
        "checkin", "client", "compile", "connection", "cursor", "dbapi", "dialect", "engine",
        "observed", "proxy", "queue", "verified",
    )

    def __init__(
        self,
        engine: sa.Engine,
        compile: Callable[[sa.Executable], Compiled],
        checkout: Callable[[], Any] | None = None,
        checkin: Callable[[Any], None] | None = None,
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.compile = compile
        dispatch = engine.dispatch
        self.observed = bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)
        #: The SQLAlchemy connection the listeners are given (made only when observed).
        self.proxy: sa.Connection | None = None
        #: Where the connection goes back after the operation (default: the pool).
        self.checkin = checkin
        #: The statements of an open :meth:`together` block (else ``None``).
        self.queue: list[tuple[str, Any, Batched]] | None = None
        #: The client-side binding cursor of :meth:`together` (psycopg), made on first use.
        self.client: Any = None
        #: The last statement run was a :meth:`together` batch that found its prepared
        #: statements there (so they still are: nothing ran since).
        self.verified = False
        try:
            self.connection: Any = (checkout or engine.raw_connection)()
        except self.dialect.loaded_dbapi.Error as error:
            raise self.wrap(error, invalidated=True) from error
        try:
            #: The driver's own connection (commit and rollback skip the pool proxy's
            #: attribute forwarding, which every operation would pay).
            self.dbapi: Any = cast(Any, self.connection.dbapi_connection)
            self.cursor: Any = self.dbapi.cursor()
        except BaseException:
            self.connection.close()
            raise

    def run(
        self,
        statement: sa.Executable,
        params: Mapping[str, Any] = _NONE,
        *,
        once: bool = False,
        cursor: Any = None,
    ) -> Any:
        """Run ``statement`` (compiled once per store; ``once``: a statement built for this
        call only, compiled and forgotten) on ``cursor`` (default: the session's); return
        the cursor, for its rows or rowcount."""
        compiled = Compiled(statement, self.dialect) if once else self.compile(statement)
        return self.execute(compiled.sql, compiled.bind(params), cursor=cursor)

    def execute(self, sql: str, params: Any = None, *, cursor: Any = None) -> Any:
        """Run driver SQL as it is (``BEGIN IMMEDIATE``); return the cursor (in a
        :meth:`together` block: queue it, and return its :class:`Batched`)."""
        if self.queue is not None:
            batched = Batched()
            self.queue.append((sql, params, batched))
            return batched
        self.verified = False
        cursor = self.cursor if cursor is None else cursor
        if self.observed:
            return self._observed(sql, params, cursor)
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
        except self.dialect.loaded_dbapi.Error as error:
            raise self.fail(error) from error
        return cursor

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Send the statements run in this block (:meth:`run`, :meth:`execute`, each
        returning a :class:`Batched`) at its end, in order, in one driver call: one round
        trip. The server runs them one after the other, as if sent one by one, and stops at
        the first that fails (the rest are skipped; the caller's transaction is then to be
        rolled back, as after any failed statement). On psycopg they are bound client-side,
        by psycopg's own adaptation of each value to a literal, and sent as one simple-query
        string; on other drivers they are run one by one. A block left by an exception
        sends nothing."""
        if self.queue is not None:
            raise RuntimeError("Session.together() blocks do not nest")
        queue: list[tuple[str, Any, Batched]] = []
        self.queue = queue
        try:
            yield
        finally:
            self.queue = None
        if queue:
            self._send(queue)

    def _send(self, queue: list[tuple[str, Any, Batched]]) -> None:
        if self.dialect.driver != "psycopg":
            for sql, params, batched in queue:
                batched.take(self.execute(sql, params))
            return
        if self.client is None:
            import psycopg  # the dialect's driver: loaded already

            self.client = psycopg.ClientCursor(self.connection.driver_connection)
        cursor = self.client
        contexts: list[ListenerContext] = []
        if self.observed:
            if self.proxy is None:
                self.proxy = sa.Connection(self.engine, self.connection)
            listeners = self.engine.dispatch.before_cursor_execute
            for index, (sql, params, batched) in enumerate(queue):
                context = ListenerContext(self, cursor, sql, params)
                for listener in listeners:
                    sql, params = listener(self.proxy, cursor, sql, params, context, False)
                context.statement, context.parameters = sql, params
                contexts.append(context)
                queue[index] = (sql, params, batched)
        driver = self.connection.driver_connection
        if driver in _PREPARED:
            prepared = _PREPARED[driver]
        else:
            prepared = _PREPARED[driver] = None if driver.prepare_threshold is None else set()
        # Prepared statements vanish when psycopg deallocates its own (DEALLOCATE ALL, after
        # a rollback), and a pooler may not keep them (PgBouncer's transaction pooling). A
        # batch that opened no transaction before it (so its statements all rolled back)
        # finding one gone is sent again, prepared again, then, if they went again, plain
        # from then on; a batch inside a transaction uses them only after this operation's
        # previous batch found them there.
        fresh = driver.pgconn.transaction_status == _IDLE
        if not (fresh or self.verified):
            prepared = None
        try:
            for attempt in range(3):
                try:
                    self._run(cursor, queue, prepared)
                    break
                except self.dialect.loaded_dbapi.Error as error:
                    if prepared is None or getattr(error, "sqlstate", None) != "26000":
                        raise
                    prepared.clear()
                    if not fresh:
                        raise
                    if driver.pgconn.transaction_status != _IDLE:
                        cursor.execute("ROLLBACK")  # (the batch's own BEGIN)
                    if attempt:
                        prepared = _PREPARED[driver] = None
        except self.dialect.loaded_dbapi.Error as error:
            raise self.fail(error) from error
        self.verified = prepared is not None
        after = self.engine.dispatch.after_cursor_execute
        for context in contexts:
            after(self.proxy, cursor, context.statement, context.parameters, context, False)

    def _run(self, cursor: Any, queue: list[tuple[str, Any, Batched]],
             prepared: set[str] | None) -> None:
        """Send ``queue`` on psycopg's client-side ``cursor``: each statement with binds as
        ``EXECUTE`` of its prepared statement (prepared first, once per connection, as
        psycopg prepares the statements it runs often: planned on every call, they would
        cost the server more than the batch saves here), or, without ``prepared``, as
        itself; then read each one's result."""
        text: list[str] = []
        preparing: dict[str, str] = {}
        for sql, params, _batched in queue:
            if params is None:
                text.append(sql)
            elif (prepared is None or not isinstance(params, Mapping)
                  or (plan := _plan(sql)) is None):
                text.append(cursor.mogrify(sql, params))
            else:
                name, prepare, execute, order = plan
                if name not in prepared:
                    preparing[name] = prepare
                text.append(cursor.mogrify(execute, [params[b] for b in order]))
        if preparing and prepared is not None:
            try:
                cursor.execute("\n;\n".join(preparing.values()))
            except BaseException:
                # Which ones exist is unknown now: this connection gets plain statements.
                _PREPARED[self.connection.driver_connection] = None
                raise
            prepared.update(preparing)
        # (each on lines of its own: a statement may end in a "--" comment, e.g. a SQL
        # commenter's)
        cursor.execute("\n;\n".join(text))
        for _sql, _params, batched in queue:
            # (the result's status, not cursor.description: that builds every column's
            # description on each read)
            if cursor.pgresult.status == _TUPLES_OK:
                batched.rows = cursor.fetchall()
            else:
                batched.rows = []
            batched.rowcount = cursor.rowcount
            cursor.nextset()

    def rollback(self) -> None:
        try:
            self.connection.rollback()
        except self.dialect.loaded_dbapi.Error as error:
            raise self.fail(error) from error

    def _observed(self, sql: str, params: Any, cursor: Any) -> Any:
        """:meth:`execute` between the engine's cursor-execute events."""
        if self.proxy is None:  # wraps the checked-out connection; never closed itself
            self.proxy = sa.Connection(self.engine, self.connection)
        dispatch = self.engine.dispatch
        context = ListenerContext(self, cursor, sql, params)
        # As SQLAlchemy runs them: each listener may return the statement and parameters to
        # run (``retval=True``); the others are wrapped by SQLAlchemy to return theirs.
        for listener in dispatch.before_cursor_execute:
            sql, params = listener(self.proxy, cursor, sql, params, context, False)
        context.statement, context.parameters = sql, params
        self.observed = False
        try:
            self.execute(sql, params, cursor=cursor)
        finally:
            self.observed = True
        dispatch.after_cursor_execute(self.proxy, cursor, sql, params, context, False)
        return cursor

    def first(
        self, statement: sa.Executable, params: Mapping[str, Any] = _NONE, *, once: bool = False
    ) -> Any:
        """The first row of ``statement`` (a driver tuple), or ``None`` (see :func:`first`)."""
        return first(self.run(statement, params, once=once))

    def fail(self, error: Exception) -> exc.DBAPIError:
        """``error`` as SQLAlchemy raises it. A connection it broke leaves the pool, and, as
        SQLAlchemy does on a disconnect, every connection of the pool opened before it is
        recycled at its next checkout (the store's kept ones included: a restarted server
        costs one failed operation, not one per kept connection)."""
        broken = self.dialect.is_disconnect(
            cast(Any, error), self.connection.dbapi_connection, self.cursor
        )
        if broken:
            self.engine.pool._invalidate(self.connection, error)
        return self.wrap(error, invalidated=broken)

    def wrap(self, error: Exception, *, invalidated: bool) -> exc.DBAPIError:
        return exc.DBAPIError.instance(  # type: ignore[return-value]
            None, None, error, self.dialect.loaded_dbapi.Error,
            connection_invalidated=invalidated, dialect=self.dialect,
        )

    def commit(self) -> None:
        try:
            self.dbapi.commit()
        except self.dialect.loaded_dbapi.Error as error:
            raise self.fail(error) from error

    def abort(self) -> None:
        """Roll back after a failure (a broken connection is only dropped)."""
        if self.connection.is_valid:
            try:
                self.connection.rollback()
            except self.dialect.loaded_dbapi.Error as error:
                self.fail(error)

    def close(self) -> None:
        """Hand the connection back (to ``checkin``, else to the pool)."""
        try:
            with contextlib.suppress(Exception):  # a cursor of a broken connection
                self.cursor.close()
                if self.client is not None:
                    self.client.close()
        finally:
            if self.checkin is None:
                self.connection.close()
            else:
                self.checkin(self.connection)
