"""A lock operation writes its event in its own transaction (LOCKING_EVENTS_ENABLED).

The event is written by the store inside the transaction that changes the lock: one commit,
and an event exists exactly when its change committed. It used to be appended after the
change had committed, in a second transaction: an operation that failed there (a crash, a
lost connection) kept its lock change and lost its event, and every operation paid a
second checkout and commit. A store without the capability is called as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from flask_locking.engine import LockEngine
from flask_locking.signals import lock_acquired
from flask_locking.store import AcquireRequest, LockRow, MemoryStore
from flask_locking.store.eventlog import NewEvent
from flask_locking.store.memory import MemoryEventLog
from flask_locking.store.sqlite import SQLiteStore
from tests.conftest import AppFactory
from tests.helpers.engine import engine_of, kinds


class Crash(Exception):
    """What the process meets right before the event's INSERT (killed, disconnected)."""


@pytest.fixture
def crash_on_event_insert(
    make_app: AppFactory, database_url: str, table_name: str
) -> Iterator[tuple[LockEngine, dict[str, bool]]]:
    """An engine on each backend whose event INSERTs raise :class:`Crash` while armed."""
    engine = engine_of(make_app(database_url=database_url))
    armed = {"on": False}
    target = f"INSERT INTO {table_name}_events"

    def crash(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if armed["on"] and target in statement.replace('"', "").replace("`", ""):
            raise Crash()

    sql_engine = engine.store.engine  # type: ignore[attr-defined]
    sa.event.listen(sql_engine, "before_cursor_execute", crash)
    yield engine, armed
    sa.event.remove(sql_engine, "before_cursor_execute", crash)


def test_an_operation_whose_event_fails_changes_no_lock(
    crash_on_event_insert: tuple[LockEngine, dict[str, bool]],
) -> None:
    engine, armed = crash_on_event_insert
    assert engine.events_in_store
    armed["on"] = True
    with pytest.raises(Crash):
        engine.acquire("/docs/a", "alice")
    armed["on"] = False
    assert engine.get("/docs/a") is None  # the grant rolled back with its event
    assert kinds(engine) == []

    lock = engine.acquire("/docs/a", "alice", timeout=60)
    before = engine.store.live("/docs/a")
    armed["on"] = True
    with pytest.raises(Crash):
        engine.refresh("/docs/a", lock.token, timeout=120)
    with pytest.raises(Crash):
        engine.release("/docs/a", token=lock.token)
    with pytest.raises(Crash):
        engine.release("/docs/a", owner="bob", force=True)
    armed["on"] = False
    assert engine.store.live("/docs/a") == before  # neither refreshed nor ended
    assert kinds(engine) == ["acquired"]

    engine.acquire("/docs/b", "alice", timeout=0.05)
    time.sleep(0.1)
    armed["on"] = True
    with pytest.raises(Crash):
        engine.purge_expired()
    armed["on"] = False
    assert [row.resource for row in engine.store.purge_expired_rows() or []] == ["/docs/b"]
    assert kinds(engine) == ["acquired", "acquired"]  # the wipe rolled back with its event

    engine.release("/docs/a", token=lock.token)
    assert kinds(engine) == ["acquired", "acquired", "released"]


def sql_statements(engine: LockEngine, run: Any) -> list[str]:
    """The statements ``run()`` sends, by their first words."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))

    sql_engine = engine.store.engine  # type: ignore[attr-defined]
    sa.event.listen(sql_engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        sa.event.remove(sql_engine, "before_cursor_execute", record)
    return seen


def test_sqlite_acquisition_and_its_event_are_one_transaction(make_app: AppFactory) -> None:
    engine = engine_of(make_app())
    statements = sql_statements(engine, lambda: engine.acquire("/docs/a", "alice"))
    # SQLite's driver runs in autocommit mode: outside a BEGIN each statement commits alone.
    # Before, the upsert committed by itself, then BEGIN, bump, event INSERT.
    assert statements[0] == "BEGIN IMMEDIATE"
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert [s.split()[0] for s in statements] == ["BEGIN", "INSERT", "UPDATE", "INSERT"]


def test_postgresql_event_is_sent_before_the_commit(make_app: AppFactory, tmp_path: Any) -> None:
    from tests.conftest import backend_url

    engine = engine_of(make_app(database_url=backend_url("postgresql", tmp_path)))
    for run in (
        lambda: engine.acquire("/docs/a", "alice"),
        lambda: engine.acquire("/docs/a", "alice"),  # a refresh through acquisition
    ):
        statements = sql_statements(engine, run)
        # One transaction: the event's statement, then the COMMIT; never
        # a second, autocommitted statement after the commit.
        assert statements[-1] == "COMMIT"
        assert "events" in statements[-2] or "head" in statements[-2], statements
    # A release is one autocommitted statement, atomic by itself, that writes its event
    # too (in a data-modifying CTE fed by the released row): nothing before or after it.
    # (after the read of the owner's lock that release(owner=) makes)
    statements = sql_statements(engine, lambda: engine.release("/docs/a", owner="alice"))
    assert statements[-1] == "WITH changed AS", statements
    assert not {"BEGIN", "COMMIT"} & set(statements), statements
    assert kinds(engine) == ["acquired", "refreshed", "released"]


def test_signals_follow_the_commit_of_the_change_and_its_event(
    make_app: AppFactory, database_url: str
) -> None:
    app = make_app(database_url=database_url)
    engine = engine_of(app)
    seen: list[list[str]] = []

    def receiver(sender: Any, **extra: Any) -> None:
        seen.append(kinds(engine))  # read on another connection: committed already

    lock_acquired.connect(receiver, app)
    try:
        with app.app_context():
            engine.acquire("/docs/a", "alice")
    finally:
        lock_acquired.disconnect(receiver, app)
    assert seen == [["acquired"]]


def test_memory_store_writes_the_event_with_the_change() -> None:
    store = MemoryStore()
    log = store.event_log()
    engine = LockEngine(store, secret_key="k", events=log)
    assert engine.events_in_store

    def fail(event: Any) -> int:
        raise Crash()

    appended = log.append
    log.append = fail  # type: ignore[method-assign]
    with pytest.raises(Crash):
        engine.acquire("/docs/a", "alice")
    log.append = appended  # type: ignore[method-assign]
    assert engine.get("/docs/a") is None
    lock = engine.acquire("/docs/a", "alice")
    engine.release("/docs/a", token=lock.token)
    assert kinds(engine) == ["acquired", "released"]


class OldSignatureStore(SQLiteStore):
    """A host's subclass written before stores took ``event=``."""

    def release(self, row: LockRow) -> bool:  # type: ignore[override]
        return super().release(row)


class OldAtOnceStore(SQLiteStore):
    """A host's subclass overriding the one-statement acquisition with its signature from
    before ``event`` (found by review: every acquire raised TypeError, a 500)."""

    def acquire_at_once(self, conn: Any, request: Any) -> Any:  # type: ignore[override]
        return super().acquire_at_once(conn, request)


class NoCapabilityStore(MemoryStore):
    def record_events(self, log: Any) -> bool:
        return False


def test_a_store_without_the_capability_gets_its_events_appended(tmp_path: Any) -> None:
    memory = NoCapabilityStore()
    sqlite = OldSignatureStore(
        sa.create_engine(f"sqlite:///{tmp_path}/old.sqlite3"), sa.MetaData(), "locks"
    )
    at_once = OldAtOnceStore(
        sa.create_engine(f"sqlite:///{tmp_path}/at_once.sqlite3"), sa.MetaData(), "locks"
    )
    sqlite.create_schema()
    at_once.create_schema()
    try:
        for store in (memory, sqlite, at_once):
            log = store.event_log()
            assert log is not None
            log.create_schema()
            engine = LockEngine(store, secret_key="k", events=log)
            assert not engine.events_in_store
            lock = engine.acquire("/docs/a", "alice")
            engine.acquire("/docs/a", "alice")
            engine.release("/docs/a", token=lock.token)
            assert kinds(engine) == ["acquired", "refreshed", "released"]
    finally:
        sqlite.dispose()
        at_once.dispose()


def test_a_store_records_only_into_its_own_log(tmp_path: Any) -> None:
    one, other = MemoryStore(), MemoryStore()
    assert not one.record_events(other.event_log())
    assert isinstance(one.event_log(), MemoryEventLog)
    request = AcquireRequest.of(LockRow("/a", "s", "o", None, None, None, True, False, 1000, 0, 0))
    assert one.acquire(request).granted  # no log attached: nothing to write, no error


def test_missing_event_tables_turn_events_off_not_the_locks(
    make_app: AppFactory, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that creates the tables itself (LOCKING_CREATE_TABLE = False) and left the
    event tables out of its migrations: every lock operation would fail (its event is part
    of its transaction), so the events are turned off with an error in the log, and the
    locks work (found by review: a 503 on SQLite, a 500 on PostgreSQL)."""
    make_app(database_url=database_url, LOCKING_EVENTS_ENABLED=False).test_client().post(
        "/docs/1/@lock"
    )  # the lock table only
    app = make_app(database_url=database_url, LOCKING_CREATE_TABLE=False)
    client = app.test_client()
    with caplog.at_level("ERROR", logger="flask_locking"):
        locked = client.post("/docs/2/@lock", headers={"X-User": "ann"})
    assert locked.status_code == 200, locked.get_data(as_text=True)
    assert "lock event tables are missing" in caplog.text
    token = locked.get_json()["token"]
    assert client.patch("/docs/2").status_code == 403
    assert client.patch("/docs/2", headers={"Lock-Token": token}).status_code == 200
    assert client.delete("/docs/2/@lock", headers={"X-User": "ann"}).status_code == 200


@pytest.mark.parametrize("id_type", ["INTEGER", "BIGINT"])
def test_sqlite_event_ids_continue_after_the_log_is_emptied(
    make_app: AppFactory, table_name: str, id_type: str
) -> None:
    """SQLite reads an event's id from the driver (``lastrowid``) where ``id`` is the
    table's rowid (an ``INTEGER PRIMARY KEY``, as this package makes it); a table made by
    hand with another key (``BIGINT``: a column of its own beside the rowid) gets the id
    read back from the counter. Either way the counter row, not the rows kept, numbers the
    events: ids go on after a prune empties the log, never reused, without gaps."""
    engine = engine_of(make_app())
    assert isinstance(engine.store, SQLiteStore)
    events = engine.events
    assert events is not None
    if id_type != "INTEGER":  # the same table, its key declared BIGINT (before any event)
        with engine.store.engine.begin() as conn:
            ddl = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = ?", (f"{table_name}_events",)
            ).scalar_one()
            conn.exec_driver_sql(f"DROP TABLE {table_name}_events")
            conn.exec_driver_sql(ddl.replace("id INTEGER NOT NULL", "id BIGINT NOT NULL", 1))
    engine.acquire("/docs/a", "alice")
    engine.release("/docs/a", owner="alice")
    time.sleep(0.01)
    events.retention_ms = 1
    assert events.prune() == 2 and events.after(0) == []
    events.retention_ms = 3_600_000
    appended = events.append(NewEvent("acquired", LockRow(
        "/docs/x", "", "", None, None, None, True, False, 1000, 0, 1), None, None))
    engine.acquire("/docs/b", "alice")
    assert appended == 3
    assert [row.id for row in events.after(0)] == [3, 4] and events.head() == 4
    # the table kept its key, and the path taken is the one it allows
    assert events._id_is_rowid is (id_type == "INTEGER")  # type: ignore[union-attr]
