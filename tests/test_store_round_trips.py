"""MariaDB: statements that need no result of another go in one round trip.

The store's own PyMySQL engine is opened with ``CLIENT.MULTI_STATEMENTS`` and
:meth:`~flask_locking.store.driver.Session.run_together` sends an acquisition in three
round trips (the upsert, the overlap check, the lease stamp and the read-back; the event
with the COMMIT) where it took nine; the upsert itself runs as a statement the server
prepared once per connection. What must not change: an event
exists exactly when its change committed (a statement failing inside a batch stops the
batch before its COMMIT), a head row never seeded is seeded by the first write, and a user's
own ``client_flag`` means one statement per round trip, still correct. Round trips are
counted at the driver's command writer (counted, not replaced).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pymysql.connections
import pytest
import sqlalchemy as sa

from flask_locking.errors import LockingError, StoreUnavailable
from tests.conftest import AppFactory, backend_url
from tests.helpers.engine import engine_of, kinds


@pytest.fixture
def mysql_url(tmp_path: Any) -> str:
    return backend_url("mysql", tmp_path)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every command PyMySQL sends (one per round trip), by its first bytes."""
    sent: list[bytes] = []
    original = pymysql.connections.Connection._execute_command

    def counted(self: Any, command: int, sql: Any) -> Any:
        sent.append(sql.encode() if isinstance(sql, str) else bytes(sql))
        return original(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", counted)
    yield sent


def test_an_acquisition_with_its_event_takes_two_round_trips(
    make_app: AppFactory, mysql_url: str, round_trips: list[bytes]
) -> None:
    engine = engine_of(make_app(database_url=mysql_url))
    engine.acquire("/docs/warm", "alice")  # the tables, the key, a kept connection
    round_trips.clear()
    lock = engine.acquire("/docs/a", "alice", timeout=60)
    # The upsert, the overlap check, the lease stamp and the read-back; the event and the
    # COMMIT.
    assert len(round_trips) == 2, round_trips
    assert round_trips[-1].rstrip().endswith(b"COMMIT")
    round_trips.clear()
    assert engine.store.refresh(engine.store.live("/docs/a"), 90_000) is not None  # type: ignore[attr-defined]
    # The read of the live row with its COMMIT; the row lock, the UPDATE, the read-back and
    # the COMMIT (no event to write: the store is called directly).
    assert len(round_trips) == 2, round_trips
    engine.release("/docs/a", token=lock.token)
    assert kinds(engine) == ["acquired", "acquired", "released"]


def test_a_user_client_flag_means_one_statement_per_round_trip(
    make_app: AppFactory, mysql_url: str, round_trips: list[bytes]
) -> None:
    from pymysql.constants import CLIENT

    app = make_app(
        database_url=mysql_url,
        LOCKING_ENGINE_OPTIONS={"connect_args": {"client_flag": CLIENT.FOUND_ROWS}},
    )
    engine = engine_of(app)
    engine.acquire("/docs/warm", "alice")
    round_trips.clear()
    lock = engine.acquire("/docs/a", "alice", timeout=60)
    assert len(round_trips) > 3
    assert all(b";\n" not in sql for sql in round_trips)
    refreshed = engine.refresh("/docs/a", lock.token, timeout=90)
    assert refreshed.version == lock.version
    with pytest.raises(LockingError):
        engine.acquire("/docs/a", "bob")
    engine.release("/docs/a", token=lock.token)
    assert engine.get("/docs/a") is None
    assert kinds(engine) == ["acquired", "acquired", "refreshed", "released"]


def test_a_statement_failing_inside_a_batch_commits_nothing(
    make_app: AppFactory, mysql_url: str, table_name: str
) -> None:
    """The server, not a listener, refuses the event's INSERT: the bump sent before it ran,
    the COMMIT sent after it did not, and the acquisition rolls back whole."""
    engine = engine_of(make_app(database_url=mysql_url))
    engine.acquire("/docs/warm", "alice")
    sql_engine = engine.store.engine  # type: ignore[attr-defined]
    armed = {"on": True}

    def break_the_event(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> Any:
        if armed["on"] and statement.startswith(f"INSERT INTO {table_name}_events"):
            return statement.replace(f"{table_name}_events", f"{table_name}_no_such"), params
        return statement, params

    sa.event.listen(sql_engine, "before_cursor_execute", break_the_event, retval=True)
    try:
        # (a missing table makes the store unavailable: the driver's error is the cause)
        with pytest.raises(StoreUnavailable) as refused:
            engine.acquire("/docs/a", "alice")
        assert "no_such" in str(refused.value.__cause__)
    finally:
        sa.event.remove(sql_engine, "before_cursor_execute", break_the_event)
    assert engine.get("/docs/a") is None
    assert kinds(engine) == ["acquired"]
    assert engine.events.head() == 1  # type: ignore[union-attr]  # the bump rolled back too
    # The connection that failed is sound, and the next writer gets the next id.
    engine.acquire("/docs/a", "alice")
    assert [row.id for row in engine.events.after(0)] == [1, 2]  # type: ignore[union-attr]


def test_an_event_head_never_seeded_is_seeded_by_the_first_write(
    make_app: AppFactory, database_url: str, table_name: str
) -> None:
    """Tables made by a migration may lack the counter row: the first event seeds it from
    the events kept (on MariaDB the batched INSERT meets NULL, and the write goes on the
    general way in the same transaction)."""
    engine = engine_of(make_app(database_url=database_url))
    engine.acquire("/docs/a", "alice")
    sql_engine = engine.store.engine  # type: ignore[attr-defined]
    with sql_engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {table_name}_event_head"))
    engine.release("/docs/a", owner="alice")
    engine.acquire("/docs/b", "alice")
    assert [(row.id, row.event) for row in engine.events.after(0)] == [  # type: ignore[union-attr]
        (1, "acquired"), (2, "released"), (3, "acquired")
    ]
    assert engine.get("/docs/b") is not None


def test_only_the_stores_own_engine_takes_several_statements_at_once(
    mysql_url: str, table_name: str, tmp_path: Any
) -> None:
    """With Flask-SQLAlchemy the store reaches the host's database on an engine of its own:
    that one is opened with MULTI_STATEMENTS, the host's engine is left as the host made it."""
    from pymysql.constants import CLIENT

    from tests.test_flask_sqlalchemy import build_host

    hosts = build_host(mysql_url, table_name, tmp_path)
    host = next(hosts)
    try:
        with host.app.app_context():
            host.locking.acquire("/items/1", "alice")
            store_engine = host.app.extensions["locking"].engine.store.engine
            assert store_engine is not host.db.engine
            with host.db.engine.connect() as conn:
                host_flags = conn.connection.dbapi_connection.client_flag
            with store_engine.connect() as conn:
                store_flags = conn.connection.dbapi_connection.client_flag
        assert not host_flags & CLIENT.MULTI_STATEMENTS
        assert store_flags & CLIENT.MULTI_STATEMENTS and store_flags & CLIENT.FOUND_ROWS
    finally:
        hosts.close()


def test_a_prepared_upsert_the_server_forgot_is_prepared_again(
    make_app: AppFactory, mysql_url: str, round_trips: list[bytes]
) -> None:
    """The upsert is prepared once per connection; a connection whose prepared statement
    is gone (deallocated behind the store's back) still acquires, and prepares it again."""
    engine = engine_of(make_app(database_url=mysql_url))
    engine.acquire("/docs/warm", "alice")
    store: Any = engine.store
    round_trips.clear()
    engine.acquire("/docs/a", "alice")
    assert not any(b"PREPARE " in sql for sql in round_trips), round_trips
    assert any(sql.startswith(b"EXECUTE ") for sql in round_trips)
    (name,) = [prepared.name for prepared in store._prepared.values()]
    (kept, _since), = store.keeper._idle
    cursor = kept.dbapi_connection.cursor()
    cursor.execute(f"DEALLOCATE PREPARE {name}")
    cursor.close()
    lock = engine.acquire("/docs/b", "alice")
    assert engine.get("/docs/b") is not None and lock.version == 1
    round_trips.clear()
    engine.acquire("/docs/c", "alice")
    assert any(b"PREPARE " + name.encode() in sql for sql in round_trips)
    assert [(row.event, row.lock.resource) for row in engine.events.after(0)][-3:] == [  # type: ignore[union-attr]
        ("acquired", "/docs/a"), ("acquired", "/docs/b"), ("acquired", "/docs/c")
    ]
