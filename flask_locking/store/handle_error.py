"""SQLAlchemy's ``handle_error`` event for the statements the store runs on the driver.

The hot operations run on the DBAPI cursor (:mod:`.driver`), where SQLAlchemy's own
``Connection._handle_dbapi_exception`` never runs. :func:`fire` does its work for them, for
the engine's ``handle_error`` listeners (error reporting, custom disconnect detection), with
the same rules: each listener gets a :class:`DriverExceptionContext`; one that returns an
exception chains it (the next listener sees it as ``chained_exception``, and the last one
returned replaces the error); one that raises stops the chain and its exception replaces
the error; ``is_disconnect`` set by a listener decides whether the connection is dropped
(and ``invalidate_pool_on_disconnect`` whether the pool's older connections are renewed
too). Only called when listeners exist (``engine.dialect.dispatch.handle_error``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import ExceptionContext


class DriverExceptionContext(ExceptionContext):
    """The ``handle_error`` listeners' argument for a statement that failed on the driver:
    what SQLAlchemy's :class:`~sqlalchemy.engine.ExceptionContext` carries. ``connection``
    is a :class:`sqlalchemy.engine.Connection` on the pooled connection (``None`` when none
    could be checked out); ``statement`` and ``parameters`` are the driver's (``None`` for a
    ``COMMIT``/``ROLLBACK`` or a checkout, as in SQLAlchemy; a batch of statements sent in
    one call shows them joined by ``;`` and ``parameters`` as the list of theirs);
    ``execution_context`` is ``None`` (there is none on this path) and ``is_pre_ping`` is
    ``False``. A listener may set ``is_disconnect`` and ``invalidate_pool_on_disconnect``."""

    __slots__ = (
        "chained_exception", "connection", "cursor", "dialect", "engine", "execution_context",
        "invalidate_pool_on_disconnect", "is_disconnect", "is_pre_ping", "original_exception",
        "parameters", "sqlalchemy_exception", "statement",
    )

    def __init__(
        self,
        engine: sa.Engine,
        connection: sa.Connection | None,
        cursor: Any,
        statement: str | None,
        parameters: Any,
        error: BaseException,
        failure: exc.DBAPIError,
        is_disconnect: bool,
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.connection = connection
        self.cursor = cursor
        self.statement = statement
        self.parameters = parameters
        self.original_exception = error
        self.sqlalchemy_exception = failure
        self.chained_exception: BaseException | None = None
        self.execution_context = None
        self.is_disconnect = is_disconnect
        self.invalidate_pool_on_disconnect = True
        self.is_pre_ping = False


class Handled(NamedTuple):
    """What the listeners made of a failure."""

    #: The exception to raise (``from`` the driver's error): a listener's, else SQLAlchemy's.
    failure: BaseException
    #: Whether the connection counts as broken (a listener may have said so, or not).
    is_disconnect: bool
    #: Whether every pooled connection opened before it is renewed too.
    invalidate_pool: bool


def fire(
    engine: sa.Engine,
    pooled: Any,
    cursor: Any,
    statement: str | None,
    parameters: Any,
    error: BaseException,
    failure: exc.DBAPIError,
    is_disconnect: bool,
    connection: sa.Connection | None = None,
) -> Handled:
    """Run the engine's ``handle_error`` listeners on the driver ``error`` (already wrapped
    as ``failure``) raised on the pool connection ``pooled`` (``None``: none was checked
    out); ``connection``: the :class:`~sqlalchemy.engine.Connection` already wrapping it,
    if any (else one is made, never closed: the store hands the pool connection back)."""
    if connection is None and pooled is not None:
        connection = sa.Connection(engine, pooled)
    context = DriverExceptionContext(
        engine, connection, cursor, statement, parameters, error, failure, is_disconnect
    )
    replaced: BaseException | None = None
    for listener in engine.dialect.dispatch.handle_error:
        try:
            returned = listener(context)
        except Exception as raised:  # as SQLAlchemy: the listener's exception wins, and ends it
            replaced = raised
            break
        if returned is not None:
            context.chained_exception = replaced = returned
    if context.is_disconnect != is_disconnect:
        failure.connection_invalidated = context.is_disconnect
    return Handled(
        replaced if replaced is not None else failure,
        bool(context.is_disconnect),
        bool(context.invalidate_pool_on_disconnect),
    )
