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
parameters are the ones run. A statement that fails (and a failed ``COMMIT``, rollback or
checkout) fires the engine's ``handle_error`` listeners as SQLAlchemy does (:mod:`.handle_error`:
a listener may replace the error, or declare a disconnect that drops the connection); without
listeners nothing is dispatched.

:meth:`Session.together` sends several statements in one driver call, one round trip
(:mod:`.batch`: psycopg's pipeline mode; PyMySQL's multi-statements, every value bound by
the driver). The listeners still see each statement on its own: every
``before_cursor_execute`` fires (in order) before the call, every ``after_cursor_execute``
after it; a failed call fires no ``after``. A ``COMMIT`` sent with a batch is not shown to
them, as the driver's own ``commit()`` never is.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Dialect

from . import batch, handle_error
from .batch import Batched, Queued

_NONE: Mapping[str, Any] = {}


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


def first(cursor: Any) -> Any:
    """The first row of what ``cursor`` ran, or ``None``. Every row is read: SQLite keeps a
    ``RETURNING`` statement (and its write) open until its last row."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


class Session:
    """One store operation on one checked-out driver connection (see the module doc)."""

    __slots__ = (
        "checkin", "commit_queued", "committed", "compile", "connection", "cursor", "dbapi",
        "dialect", "engine", "observed", "proxy", "queue",
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
        #: The statements of an open :meth:`together` block (else ``None``), and whether
        #: the transaction's ``COMMIT`` goes with them.
        self.queue: list[Queued] | None = None
        self.commit_queued = False
        #: A :meth:`together` batch sent the ``COMMIT``: :meth:`commit` has nothing to do.
        self.committed = False
        try:
            self.connection: Any = (checkout or engine.raw_connection)()
        except self.dialect.loaded_dbapi.Error as error:
            raise checkout_failure(engine, error) from error
        try:
            #: The driver's own connection (commit and rollback skip the pool proxy's
            #: attribute forwarding, which every operation would pay).
            self.dbapi: Any = cast(Any, self.connection.dbapi_connection)
            self.cursor: Any = self.dbapi.cursor()
        except self.dialect.loaded_dbapi.Error as error:
            # A connection that cannot even give a cursor (closed under us) is of no use:
            # it leaves the pool, and the error is SQLAlchemy's, as any other failure.
            failure = driver_failure(engine, self.connection, None, error)
            if self.connection.is_valid:
                self.connection.invalidate(error)
            self.connection.close()
            raise failure from error
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
        :meth:`together` block: queue it, and return its
        :class:`~flask_locking.store.batch.Batched`)."""
        if self.queue is not None:
            if self.commit_queued:
                raise RuntimeError("nothing may follow the COMMIT of a together() block")
            batched = Batched()
            self.queue.append((sql, params, batched))
            return batched
        self.committed = False  # (a statement after a COMMIT sent with a batch)
        cursor = self.cursor if cursor is None else cursor
        if self.observed:
            return self._observed(sql, params, cursor)
        try:
            if params is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, params)
        except self.dialect.loaded_dbapi.Error as error:
            raise self.fail(error, sql, params) from error
        return cursor

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Send the statements run in this block (:meth:`run`, :meth:`execute`, each
        returning a :class:`~flask_locking.store.batch.Batched`) at its end, in order, in
        one driver call: one round trip where the driver allows it (:mod:`.batch`), else
        one after the other. The server runs them as if sent one by one and stops at the
        first that fails (the rest are skipped; the caller's transaction is then to be
        rolled back, as after any failed statement). :meth:`commit` called last in the
        block sends the ``COMMIT`` with them. A block left by an exception sends nothing.
        Statements in the block may not depend on each other's results."""
        if self.queue is not None:
            raise RuntimeError("Session.together() blocks do not nest")
        queue: list[Queued] = []
        self.queue, self.commit_queued = queue, False
        try:
            yield
        finally:
            self.queue = None
        if queue or self.commit_queued:
            self._send(queue, self.commit_queued)

    def run_together(
        self,
        steps: Sequence[tuple[sa.Executable | Compiled, Mapping[str, Any]]],
        *,
        commit: bool = False,
    ) -> list[Any]:
        """:meth:`together` for ``steps`` (statements, compiled once per store or given
        compiled, with their parameters); ``commit``: the ``COMMIT`` goes with them."""
        compiled = [
            (step if isinstance(step, Compiled) else self.compile(step), params)
            for step, params in steps
        ]
        if len(compiled) == 1 and not batch.commits_together(self):
            # One statement, and a COMMIT that would not travel with it anyway (the guard's
            # lookup on PostgreSQL): run as itself, without the batch's bookkeeping.
            (only, params), = compiled
            ran: list[Any] = [self.execute(only.sql, only.bind(params))]
            if commit:
                self.commit()
            return ran
        with self.together():
            ran = [self.execute(c.sql, c.bind(params)) for c, params in compiled]
            if commit:
                self.commit()
        return ran

    def _send(self, queue: list[Queued], commit: bool) -> None:
        """A :meth:`together` batch, between the listeners' events."""
        contexts = self._before_batch(queue) if self.observed else ()
        try:
            batch.send(self, queue, commit)
        except self.dialect.loaded_dbapi.Error as error:
            statements = "; ".join(sql for sql, _params, _batched in queue)
            raise self.fail(error, statements, [params for _sql, params, _ in queue]) from error
        self.committed = commit
        after = self.engine.dispatch.after_cursor_execute
        for context in contexts:
            after(self.proxy, context.cursor, context.statement, context.parameters, context,
                  False)

    def _before_batch(self, queue: list[Queued]) -> list[ListenerContext]:
        """The ``before_cursor_execute`` listeners on each statement of a batch, in order,
        as :meth:`_observed` runs them (a ``retval=True`` listener's statement and
        parameters replace the queued ones); their contexts."""
        if self.proxy is None:
            self.proxy = sa.Connection(self.engine, self.connection)
        cursor = self.cursor
        listeners = self.engine.dispatch.before_cursor_execute
        contexts: list[ListenerContext] = []
        for index, (sql, params, batched) in enumerate(queue):
            context = ListenerContext(self, cursor, sql, params)
            for listener in listeners:
                sql, params = listener(self.proxy, cursor, sql, params, context, False)
            context.statement, context.parameters = sql, params
            contexts.append(context)
            queue[index] = (sql, params, batched)
        return contexts

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

    def fail(
        self, error: Exception, statement: str | None = None, parameters: Any = None
    ) -> BaseException:
        """``error`` (raised running ``statement``, if any) as SQLAlchemy raises it (see
        :func:`driver_failure`)."""
        return driver_failure(
            self.engine, self.connection, self.cursor, error, statement, parameters, self.proxy
        )

    def commit(self) -> None:
        """Commit the operation's transaction (in a :meth:`together` block: with the batch;
        after a batch that sent it: nothing left to do)."""
        if self.queue is not None:
            self.commit_queued = True
            return
        if self.committed:
            return
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
        finally:
            if self.checkin is None:
                self.connection.close()
            else:
                self.checkin(self.connection)


def driver_failure(
    engine: sa.Engine,
    connection: Any,
    cursor: Any,
    error: Exception,
    statement: str | None = None,
    parameters: Any = None,
    proxy: sa.Connection | None = None,
) -> BaseException:
    """A driver ``error`` raised on pool-proxied ``connection`` (running ``statement``, if
    any) as SQLAlchemy raises it: wrapped, and through the engine's ``handle_error``
    listeners when there are some (whose exception then replaces it; ``proxy``: the
    :class:`~sqlalchemy.engine.Connection` they are shown, if one wraps ``connection``). A
    connection it broke (or a listener declared a disconnect) leaves the pool, and, as
    SQLAlchemy does on a disconnect, every connection of the pool opened before it is
    recycled at its next checkout (the store's kept ones included: a restarted server costs
    one failed operation, not one per kept connection)."""
    dialect = engine.dialect
    broken = dialect.is_disconnect(
        cast(Any, error), connection.dbapi_connection, cursor
    ) or stale_prepared_plan(error)
    failure: BaseException = wrap_driver_error(dialect, error, invalidated=broken)
    whole_pool = True
    if dialect.dispatch.handle_error:
        failure, broken, whole_pool = handle_error.fire(
            engine, connection, cursor, statement, parameters, error,
            cast(exc.DBAPIError, failure), broken, proxy,
        )
    if broken:
        if whole_pool:
            engine.pool._invalidate(connection, error)
        else:
            connection.invalidate(error)
    return failure


def checkout_failure(engine: sa.Engine, error: Exception) -> BaseException:
    """A driver ``error`` raised checking a connection out, as SQLAlchemy raises it (a
    broken connection; through the ``handle_error`` listeners, with no connection)."""
    failure: BaseException = wrap_driver_error(engine.dialect, error, invalidated=True)
    if engine.dialect.dispatch.handle_error:
        failure = handle_error.fire(
            engine, None, None, None, None, error, cast(exc.DBAPIError, failure), True
        ).failure
    return failure


def stale_prepared_plan(error: BaseException | None) -> bool:
    """Whether ``error`` is PostgreSQL refusing a statement it prepared before the table
    changed shape ("cached plan must not change result type", SQLSTATE 0A000, after a
    migration widened a column). Every connection that prepared it fails the same way until
    the statement is deallocated, so such a connection counts as broken: it leaves the pool,
    and every connection opened before it is renewed (as after a disconnect)."""
    return getattr(error, "sqlstate", None) == "0A000" and "cached plan" in str(error)


def wrap_driver_error(dialect: Dialect, error: Exception, *, invalidated: bool) -> exc.DBAPIError:
    """``error`` wrapped in SQLAlchemy's matching :class:`~sqlalchemy.exc.DBAPIError`."""
    return exc.DBAPIError.instance(  # type: ignore[return-value]
        None, None, error, dialect.loaded_dbapi.Error,
        connection_invalidated=invalidated, dialect=dialect,
    )
