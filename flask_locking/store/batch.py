"""Several statements of one store operation sent in one driver call (one round trip).

:meth:`Session.together <flask_locking.store.driver.Session.together>` queues the
statements run in its block and hands them here at its end, with whether the
transaction's ``COMMIT`` goes with them. How they travel depends on the driver:

* **psycopg**: one simple-query string, every value bound client-side by psycopg's own
  adaptation of it to a literal (``ClientCursor.mogrify``). Each statement is prepared once
  per connection (``PREPARE``, then ``EXECUTE`` with the literals), as psycopg prepares the
  statements it runs often: planned on every call, they would cost the server more than
  the batch saves the client.
* **PyMySQL opened with** ``CLIENT.MULTI_STATEMENTS`` (the store's own engine is, see
  :mod:`.sql_engine`): one multi-statement string, bound by PyMySQL's own ``mogrify``.
* **anything else** (SQLite, a user's own ``client_flag``): one statement after another.

The server runs a batch's statements in order, as if sent one by one, and stops at the
first that fails: the rest, a ``COMMIT`` included, never run, and the caller rolls back.
Each statement ends on a line of its own, so that a trailing ``-- comment`` (a SQL
commenter's) cannot swallow the separator.
"""

from __future__ import annotations

import itertools
import re
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .driver import Session

#: The MySQL protocol's ``CLIENT.MULTI_STATEMENTS`` flag (PyMySQL's ``constants.CLIENT``).
MULTI_STATEMENTS = 1 << 16
#: psycopg's ExecStatus.TUPLES_OK: a result that has rows (possibly none).
_TUPLES_OK = 2
#: psycopg's TransactionStatus.IDLE: no transaction open.
_IDLE = 0
#: The SQLSTATE of "prepared statement does not exist".
_NO_SUCH_PREPARED = "26000"
#: psycopg: the statements prepared on each connection (by name); ``None``: that
#: connection is sent plain statements (its ``prepare_threshold`` is ``None``, e.g. behind
#: PgBouncer, or its prepared statements went away).
_PREPARED: weakref.WeakKeyDictionary[Any, set[str] | None] = weakref.WeakKeyDictionary()
#: psycopg: for a driver SQL, its prepared statement's name, ``PREPARE``, its ``EXECUTE``
#: template and the order of its binds (see :func:`_plan`).
_PLANS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {}
_NAMES = itertools.count()
#: A pyformat bind (``%(name)s``) or an escaped ``%`` in SQL compiled for psycopg.
_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s|%%")
#: Between two statements of a batch.
_SEPARATOR = "\n;\n"


class Batched:
    """What a statement run in :meth:`Session.together` gives back: its rows and rowcount,
    read from the driver once the block has sent the batch (a cursor's ``fetchall`` and
    ``rowcount``, for :func:`~flask_locking.store.driver.first` and the callers of
    :meth:`Session.run`)."""

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


#: A queued statement: its driver SQL, its driver parameters, where its result goes.
Queued = tuple[str, Any, Batched]


def send(session: Session, queue: list[Queued], commit: bool) -> None:
    """Run ``queue`` on ``session``'s connection (then ``COMMIT`` when ``commit``), filling
    each statement's :class:`Batched`. Driver errors are raised as the driver raised them.
    A lone statement is sent as itself (the driver's own binding and preparing)."""
    driver = session.dialect.driver
    if driver == "pymysql" and getattr(session.dbapi, "client_flag", 0) & MULTI_STATEMENTS:
        if len(queue) > 1 or commit:  # (PyMySQL's commit() is a round trip of its own)
            _send_multi_statements(session, queue, commit)
            return
    elif driver == "psycopg" and len(queue) > 1:
        _send_psycopg(session, queue)
        queue = []
    cursor = session.cursor
    for sql, params, batched in queue:
        if params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        batched.take(cursor)
    if commit:
        # (psycopg: nothing is sent unless a transaction is open; the store's batches send
        # their COMMIT as a statement of their own)
        session.dbapi.commit()


def _send_multi_statements(session: Session, queue: list[Queued], commit: bool) -> None:
    """PyMySQL with ``MULTI_STATEMENTS``: one string, bound by the driver's ``mogrify``."""
    cursor = session.cursor
    text = [cursor.mogrify(sql, params) for sql, params, _batched in queue]
    if commit:
        text.append("COMMIT")
    cursor.execute(_SEPARATOR.join(text))
    for index, (_sql, _params, batched) in enumerate(queue):
        if index:
            cursor.nextset()
        batched.take(cursor)
    if commit:
        cursor.nextset()  # (the COMMIT's own result: read, so the connection is free)


def _send_psycopg(session: Session, queue: list[Queued]) -> None:
    """psycopg: one simple-query string on a client-side binding cursor, each statement
    prepared once per connection (see the module doc)."""
    cursor = session.client_cursor()
    driver = session.connection.driver_connection
    if driver in _PREPARED:
        prepared = _PREPARED[driver]
    else:
        prepared = _PREPARED[driver] = None if driver.prepare_threshold is None else set()
    # Prepared statements vanish when psycopg deallocates its own (DEALLOCATE ALL, after a
    # rollback), and a pooler may not keep them (PgBouncer's transaction pooling). A batch
    # that opened no transaction before it (so its statements all rolled back) finding one
    # gone is sent again, prepared again, then, if they went again, plain from then on; a
    # batch inside a transaction uses them only after this operation's previous batch
    # found them there.
    fresh = driver.pgconn.transaction_status == _IDLE
    if not (fresh or session.verified):
        prepared = None
    for attempt in range(3):
        try:
            _run_psycopg(session, cursor, queue, prepared)
            break
        except session.dialect.loaded_dbapi.Error as error:
            if prepared is None or getattr(error, "sqlstate", None) != _NO_SUCH_PREPARED:
                raise
            prepared.clear()
            if not fresh:
                raise
            if driver.pgconn.transaction_status != _IDLE:
                cursor.execute("ROLLBACK")  # (the batch's own BEGIN)
            if attempt:
                prepared = _PREPARED[driver] = None
    session.verified = prepared is not None


def _run_psycopg(
    session: Session, cursor: Any, queue: list[Queued], prepared: set[str] | None
) -> None:
    """Send ``queue`` on psycopg's client-side ``cursor``: each statement with binds as
    ``EXECUTE`` of its prepared statement (prepared first, once per connection), or,
    without ``prepared``, as itself; then read each one's result."""
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
            cursor.execute(_SEPARATOR.join(preparing.values()))
        except BaseException:
            # Which ones exist is unknown now: this connection gets plain statements.
            _PREPARED[session.connection.driver_connection] = None
            raise
        prepared.update(preparing)
    cursor.execute(_SEPARATOR.join(text))
    for _sql, _params, batched in queue:
        # (the result's status, not cursor.description: that builds every column's
        # description on each read)
        batched.rows = cursor.fetchall() if cursor.pgresult.status == _TUPLES_OK else []
        batched.rowcount = cursor.rowcount
        cursor.nextset()


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
