"""The engine's ``handle_error`` listeners see the store's hot statements fail, as SQLAlchemy
shows them a failure of its own executions: hosts report errors and declare their own
disconnects with them. The hot path runs on the driver cursor, where SQLAlchemy's error
handling never runs, so it fires the event itself (docs/stores.rst, "Engine events")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_locking import Locking, StoreUnavailable
from tests.conftest import AppFactory

ANN = {"X-User": "ann"}


class HostError(Exception):
    """An exception of the host's own, raised by its listener."""


def drop_lock_table(app: Flask) -> None:
    """The lock table disappears under the running app: every lock statement now fails
    (on PostgreSQL and MariaDB with an error that is not a disconnect)."""
    store = app.extensions["locking"].engine.store
    engine = sa.create_engine(store.engine.url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SET lock_timeout = '10s'"))
            elif engine.dialect.name in ("mysql", "mariadb"):
                conn.execute(sa.text("SET SESSION lock_wait_timeout = 10"))
            conn.execute(sa.text(f"DROP TABLE {store.table.name}"))
    finally:
        engine.dispose()


@pytest.fixture
def live_app(make_app: AppFactory, database_url: str) -> Iterator[Flask]:
    """An app whose store has run a lock operation (table made, connections kept)."""
    app = make_app(database_url=database_url)
    client = app.test_client()
    assert client.post("/docs/warm/@lock", headers=ANN).status_code == 200
    yield app


def listen(app: Flask, listener: Any) -> Any:
    engine = app.extensions["locking"].engine.store.engine
    sa.event.listen(engine, "handle_error", listener)
    return engine


def test_a_listener_sees_the_failing_hot_statement(live_app: Flask) -> None:
    seen: list[Any] = []
    engine = listen(live_app, seen.append)
    drop_lock_table(live_app)
    response = live_app.test_client().post("/docs/1/@lock", headers=ANN)
    assert response.status_code in (500, 503), response.get_data(as_text=True)
    assert seen, "no handle_error event"
    failing = [c for c in seen if c.statement and "/docs/1" in repr(c.parameters)]
    assert failing, [(c.statement, c.parameters) for c in seen]
    context = failing[0]
    table = live_app.extensions["locking"].engine.store.table.name
    assert table in context.statement
    assert isinstance(context.original_exception, engine.dialect.loaded_dbapi.Error)
    assert isinstance(context.sqlalchemy_exception, sa.exc.DBAPIError)
    assert context.sqlalchemy_exception.orig is context.original_exception
    assert context.engine is engine and context.dialect is engine.dialect
    assert isinstance(context.connection, sa.Connection)
    assert context.cursor is not None
    assert context.execution_context is None and context.is_pre_ping is False
    assert context.chained_exception is None
    assert context.is_disconnect is False  # a missing table is no disconnect
    assert context.invalidate_pool_on_disconnect is True


def test_a_listener_declaring_a_disconnect_drops_the_connection(live_app: Flask) -> None:
    used: list[Any] = []

    def disconnect(context: Any) -> None:
        used.append(context.connection.connection.dbapi_connection)
        context.is_disconnect = True

    engine = listen(live_app, disconnect)
    drop_lock_table(live_app)
    response = live_app.test_client().post("/docs/1/@lock", headers=ANN)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers.get("Retry-After")
    assert used
    with pytest.raises(engine.dialect.loaded_dbapi.Error):  # closed: out of the pool
        used[0].cursor().execute("SELECT 1")


def test_without_a_listener_the_connection_stays(live_app: Flask) -> None:
    engine = live_app.extensions["locking"].engine.store.engine
    # No host listener (PostgreSQL's store has its own: a stale prepared plan disconnects).
    own = 1 if engine.dialect.name == "postgresql" else 0
    assert len(list(engine.dialect.dispatch.handle_error)) == own
    drop_lock_table(live_app)
    with live_app.app_context(), pytest.raises(Exception):  # noqa: B017,PT011 - any failure
        live_app.extensions["locking"].extension.acquire("/docs/1", "ann")
    with engine.connect() as conn:  # the pool still hands out working connections
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_a_listener_exception_replaces_the_error_and_stays_a_store_failure(
    live_app: Flask,
) -> None:
    def report(context: Any) -> None:
        raise HostError(f"reported: {context.statement}")

    listen(live_app, report)
    drop_lock_table(live_app)
    response = live_app.test_client().post("/docs/1/@lock", headers=ANN)
    assert response.status_code == 503, response.get_data(as_text=True)
    guarded = live_app.test_client().patch("/docs/1", headers=ANN)  # the guard's lookup
    assert guarded.status_code == 503  # fails closed, as on any store failure
    locking: Locking = live_app.extensions["locking"].extension
    with live_app.app_context(), pytest.raises(StoreUnavailable) as raised:
        locking.acquire("/docs/2", "ann")
    assert isinstance(raised.value.__cause__, HostError)


def test_a_returned_exception_is_chained_and_replaces_the_error(live_app: Flask) -> None:
    chain: list[Any] = []

    def first(context: Any) -> Exception:
        return sa.exc.OperationalError(context.statement, context.parameters,
                                       context.original_exception)

    def second(context: Any) -> None:
        chain.append(context.chained_exception)

    listen(live_app, first)
    listen(live_app, second)
    drop_lock_table(live_app)
    locking: Locking = live_app.extensions["locking"].extension
    with live_app.app_context(), pytest.raises(StoreUnavailable) as raised:
        locking.acquire("/docs/2", "ann")
    assert chain and isinstance(chain[0], sa.exc.OperationalError)
    assert raised.value.__cause__ is chain[0]
