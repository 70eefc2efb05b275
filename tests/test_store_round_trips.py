"""MariaDB: statements that need no result of another go in one round trip.

The store's own PyMySQL engine is opened with ``CLIENT.MULTI_STATEMENTS`` and
:meth:`~flask_locking.store.driver.Session.run_together` sends a won acquisition in one
round trip (the upsert, the overlap check, the lease stamp and the read-back, the event and
the COMMIT, each write only when it won; a loser's batch ends with ROLLBACK) where it took
nine; the upsert itself runs as a statement the server
prepared once per connection. What must not change: an event
exists exactly when its change committed (a statement failing inside a batch stops the
batch before its COMMIT), a head row never seeded is seeded by the first write, and a user's
own ``client_flag`` means one statement per round trip, still correct. Round trips are
counted at the driver's command writer (counted, not replaced).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql.connections
import pytest
import sqlalchemy as sa

from flask_locking import LockConflict
from flask_locking.errors import LockingError, StoreUnavailable
from tests.conftest import AppFactory, backend_url
from tests.helpers.engine import engine_of, kinds


@pytest.fixture
def mysql_url(tmp_path: Any) -> str:
    return backend_url("mysql", tmp_path)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every command PyMySQL sends from this test's thread (one per round trip), by its
    first bytes. (Only this thread's: a background thread of the process, such as an event
    stream's poller another test left running, would count its own polls.)"""
    sent: list[bytes] = []
    original = pymysql.connections.Connection._execute_command
    ours = threading.get_ident()

    def counted(self: Any, command: int, sql: Any) -> Any:
        if threading.get_ident() == ours:
            sent.append(sql.encode() if isinstance(sql, str) else bytes(sql))
        return original(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", counted)
    yield sent


def test_an_acquisition_with_its_event_takes_one_round_trip(
    make_app: AppFactory, mysql_url: str, round_trips: list[bytes]
) -> None:
    engine = engine_of(make_app(database_url=mysql_url))
    engine.acquire("/docs/warm", "alice")  # the tables, the key, a kept connection
    round_trips.clear()
    lock = engine.acquire("/docs/a", "alice", timeout=60)
    # The upsert, the overlap check, the decision, the lease stamp, the read-back, the
    # event (counter bump and INSERT) and the COMMIT (the batch's end, as decided).
    assert len(round_trips) == 1, round_trips
    assert round_trips[-1].rstrip().endswith(b"'COMMIT', 'ROLLBACK')")
    round_trips.clear()
    assert engine.store.refresh(engine.store.live("/docs/a"), 90_000) is not None  # type: ignore[attr-defined]
    # The read of the live row with its COMMIT; the row lock, the UPDATE, the read-back and
    # the COMMIT (no event to write: the store is called directly).
    assert len(round_trips) == 2, round_trips
    engine.release("/docs/a", token=lock.token)
    assert kinds(engine) == ["acquired", "acquired", "released"]


def _stored(engine: Any, resource: str) -> Any:
    """The row of ``resource`` as committed, read on a connection of its own."""
    store: Any = engine.store
    with store.engine.connect() as conn:
        return conn.execute(store._select_row, {"resource": resource}).one()


def test_a_losing_batch_ends_its_transaction_and_commits_nothing(
    make_app: AppFactory, mysql_url: str, round_trips: list[bytes]
) -> None:
    """A batch that ends with the transaction's end, decided in SQL: a loser's must roll
    back, not commit. Alice's expired lock below Bob's infinite one is taken back by her
    upsert (it does not look at other rows) before the overlap read finds Bob's lock: a
    batch that committed would revive it, with its event and the counter's bump. Its
    session variables are set anew by every batch: what one loser noted never decides the
    next acquisition on that connection."""
    engine = engine_of(make_app(database_url=mysql_url))
    engine.acquire("/docs/a/b", "alice", timeout=0.05)
    time.sleep(0.1)
    engine.acquire("/docs/a", "bob", depth="infinity")
    log: Any = engine.events
    expired, head = _stored(engine, "/docs/a/b"), log.head()
    round_trips.clear()
    with pytest.raises(LockConflict) as conflict:
        engine.acquire("/docs/a/b", "alice")
    assert conflict.value.lock is not None and conflict.value.lock.resource == "/docs/a"
    loser = round_trips[0]
    with pytest.raises(LockConflict):  # bob's row itself
        engine.acquire("/docs/a", "carol")
    assert _stored(engine, "/docs/a/b") == expired  # not stamped, not taken back
    assert (log.head(), kinds(engine)) == (head, ["acquired", "acquired"])
    assert loser.rstrip().endswith(b"'COMMIT', 'ROLLBACK')"), loser
    # The next acquisitions on the kept connection (with an overlap check, and a key with
    # none) win in one round trip each, and the row the loser touched is free to write.
    for key in ("/docs/c", "/root"):
        round_trips.clear()
        assert engine.acquire(key, "alice").version == 1
        assert len(round_trips) == 1, round_trips
    with engine.store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 1"))
        conn.execute(engine.store.table.update().values(timeout_ms=1)  # type: ignore[attr-defined]
                     .where(engine.store.table.c.resource == "/docs/a/b"))  # type: ignore[attr-defined]
    assert kinds(engine) == ["acquired"] * 4
    assert [row.id for row in log.after(0)] == [1, 2, 3, 4]


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
    name = store._prepared[id(store._upsert)].name
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
