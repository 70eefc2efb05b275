"""``Session.together()`` (``store/driver.py``, ``store/batch.py``): statements sent in one
driver call.

On every backend: each statement gets its own rows and rowcount, in order; the engine's
cursor-execute listeners see each statement; a statement that fails raises as a driver error
does, and the operation's transaction, rolled back, leaves nothing behind. PostgreSQL: a
connection the server drops mid-batch is invalidated like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from flask_locking.errors import StoreUnavailable
from flask_locking.store import store_from_uri
from flask_locking.store.sql import SQLStore
from tests.conftest import drop_tables


@pytest.fixture
def store(database_url: str, table_name: str) -> Iterator[SQLStore]:
    made = store_from_uri(database_url, table_name=table_name)
    assert isinstance(made, SQLStore)
    made.create_schema()
    yield made
    made.dispose()
    if not database_url.startswith("sqlite"):
        drop_tables(database_url, table_name)


def _meta(store: SQLStore, name: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(store._select_meta, {"name": name}).scalar()


def test_each_statement_gets_its_rows_and_rowcount_and_listeners_see_it(
    store: SQLStore,
) -> None:
    seen: list[tuple[str, str]] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(("before", statement.split()[0]))

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(("after", statement.split()[0]))

    sa.event.listen(store.engine, "before_cursor_execute", before)
    sa.event.listen(store.engine, "after_cursor_execute", after)
    try:
        with store.operation(write=True) as session, session.together():
            inserted = session.run(store._insert_meta, {"name": "a", "value": "x'\\\"é"})
            again = session.run(store._insert_meta, {"name": "a", "value": "other"})
            read = session.run(store._select_meta, {"name": "a"})
            none = session.run(store._select_meta, {"name": "b"})
            with pytest.raises(RuntimeError):
                read.fetchall()  # not sent yet
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", before)
        sa.event.remove(store.engine, "after_cursor_execute", after)
    assert (inserted.rowcount, again.rowcount) == (1, 0)  # (the second was ignored)
    assert [tuple(r) for r in read.fetchall()] == [("x'\\\"é",)]
    assert none.fetchall() == []
    kinds = [word for when, word in seen if when == "before"]
    assert kinds[-4:] == ["INSERT", "INSERT", "SELECT", "SELECT"]
    assert [word for when, word in seen if when == "after"][-4:] == kinds[-4:]
    assert _meta(store, "a") == "x'\\\"é"


def test_a_statement_failing_mid_batch_leaves_nothing_behind(store: SQLStore) -> None:
    with pytest.raises(exc.DBAPIError), store.operation(write=True) as session:
        with session.together():
            session.run(store._insert_meta, {"name": "half", "value": "v"})
            session.run(sa.text("SELECT * FROM no_such_table_here"), once=True)
            session.run(store._insert_meta, {"name": "after", "value": "v"})
    assert _meta(store, "half") is None
    assert _meta(store, "after") is None
    with store.operation(write=True) as session, session.together():  # the connection is fine
        session.run(store._insert_meta, {"name": "later", "value": "v"})
    assert _meta(store, "later") == "v"


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_connection_dropped_mid_batch_is_invalidated(store: SQLStore) -> None:
    store.keeper.ping_after = 3600.0  # a dead kept connection is found only by using it
    with pytest.raises(StoreUnavailable) as raised, store._translated():
        with store.operation() as session, session.together():
            session.execute("BEGIN")
            session.run(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"), once=True)
            session.run(store._select_now)
    cause = raised.value.__cause__
    assert isinstance(cause, exc.DBAPIError) and cause.connection_invalidated
    assert store.keeper.parked == 0  # the dead connection was not kept
    assert store.live("/docs/1") is None  # the next operation gets a working one
