"""Several statements of one store operation sent in one driver call (one round trip).

:meth:`Session.together <flask_locking.store.driver.Session.together>` queues the
statements run in its block and hands them here at its end, with whether the
transaction's ``COMMIT`` goes with them. How they travel depends on the driver:

* **psycopg**: pipeline mode, each statement on a cursor of its own, as psycopg's
  ``Connection.pipeline()`` sends them: one round trip, the values bound by the server,
  the statements psycopg runs often prepared by psycopg itself (which also forgets them
  when it must, after a rollback).
* **PyMySQL opened with** ``CLIENT.MULTI_STATEMENTS`` (the store's own engine is, see
  :mod:`.sql_engine`): one multi-statement string, bound by PyMySQL's own ``mogrify``.
* **anything else** (SQLite, a user's own ``client_flag``): one statement after another.

The server runs a batch's statements in order, as if sent one by one, and stops at the
first that fails: the rest, a ``COMMIT`` included, never run, and the caller rolls back.
Each statement ends on a line of its own, so that a trailing ``-- comment`` (a SQL
commenter's) cannot swallow the separator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .driver import Session

#: The MySQL protocol's ``CLIENT.MULTI_STATEMENTS`` flag (PyMySQL's ``constants.CLIENT``).
MULTI_STATEMENTS = 1 << 16
#: psycopg's ExecStatus.TUPLES_OK: a result that has rows (possibly none).
_TUPLES_OK = 2
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


def commits_together(session: Session) -> bool:
    """Whether a ``COMMIT`` can travel with ``session``'s statements (PyMySQL with
    ``MULTI_STATEMENTS``, whose ``commit()`` is a round trip of its own)."""
    return session.dialect.driver == "pymysql" and bool(
        getattr(session.dbapi, "client_flag", 0) & MULTI_STATEMENTS
    )


def send(session: Session, queue: list[Queued], commit: bool) -> None:
    """Run ``queue`` on ``session``'s connection (then ``COMMIT`` when ``commit``), filling
    each statement's :class:`Batched`. Driver errors are raised as the driver raised them.
    A lone statement is sent as itself (the driver's own binding and preparing)."""
    driver = session.dialect.driver
    if commits_together(session):
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
    """psycopg: the statements in one pipeline, each on a cursor of its own (a pipeline's
    results are read at its end); the first that fails raises when the pipeline ends, and
    those after it were skipped."""
    connection = session.connection.driver_connection
    cursors = [connection.cursor() for _ in queue]
    try:
        with connection.pipeline():
            for cursor, (sql, params, _batched) in zip(cursors, queue, strict=True):
                if params is None:
                    cursor.execute(sql)
                else:
                    cursor.execute(sql, params)
        for cursor, (_sql, _params, batched) in zip(cursors, queue, strict=True):
            # (the result's status, not cursor.description: psycopg builds every column's
            # description to answer that)
            batched.rows = cursor.fetchall() if cursor.pgresult.status == _TUPLES_OK else []
            batched.rowcount = cursor.rowcount
    finally:
        for cursor in cursors:
            cursor.close()
