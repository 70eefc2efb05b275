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

from flask_locking import LockConflict
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


def sql_statements(engine: LockEngine, run: Any, *, words: int | None = 3) -> list[str]:
    """The statements ``run()`` sends, by their first ``words`` (``None``: whole)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()[:words]))

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
        statements = sql_statements(engine, run, words=None)
        # One transaction, one batch: the advisory lock, the upsert, and the lease's stamp
        # with the event written from the stamped row (data-modifying CTEs), which the
        # server commits at the batch's end; nothing before or after it.
        assert [s.split()[0] for s in statements] == ["SELECT", "INSERT", "WITH"], statements
        assert statements[-1].startswith("WITH stamp AS"), statements
        assert "_events" in statements[-1] and "pg_notify" in statements[-1]
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


def _stored(engine: LockEngine, resource: str) -> Any:
    """The row of ``resource`` as it is stored, live or not."""
    store: Any = engine.store
    with store.engine.connect() as conn:
        return conn.execute(store._select_row, {"resource": resource}).one()


def test_a_lost_acquisition_leaves_nothing_behind(
    make_app: AppFactory, database_url: str
) -> None:
    """PostgreSQL sends a loser's COMMIT with its statements (one round trip whether it wins
    or not): the lease stamp and the event in that batch must act only on the row its own
    upsert wrote. A stamp that took "the row is the caller's" for "the caller won" would
    revive the caller's expired lock below another's infinite one, and record it."""
    engine = engine_of(make_app(database_url=database_url))
    engine.acquire("/docs/a/b", "alice", timeout=0.05)
    time.sleep(0.1)
    held = engine.acquire("/docs/a", "bob", depth="infinity")
    expired = _stored(engine, "/docs/a/b")
    before = kinds(engine)
    with pytest.raises(LockConflict) as conflict:  # blocked by bob's lock above
        engine.acquire("/docs/a/b", "alice")
    assert conflict.value.lock is not None and conflict.value.lock.resource == "/docs/a"
    with pytest.raises(LockConflict):  # bob's row itself
        engine.acquire("/docs/a", "carol")
    assert _stored(engine, "/docs/a/b") == expired  # not stamped again: still expired
    assert engine.get("/docs/a/b") is None
    assert kinds(engine) == before == ["acquired", "acquired"]

    # The owner locking again refreshes (token and version kept, the lease restarted), and
    # the event describes the row as stored.
    again = engine.acquire("/docs/a", "bob", depth="infinity")
    assert (again.token, again.version) == (held.token, held.version)
    assert again.time >= held.time
    engine.release("/docs/a", token=held.token)
    # An expired row taken over: a new grant, the next version.
    taken = engine.acquire("/docs/a/b", "carol")
    assert taken.version == expired.version + 1
    assert engine.events is not None
    events = engine.events.after(0)
    assert [e.event for e in events] == [
        "acquired", "acquired", "refreshed", "released", "acquired"
    ]
    assert [e.id for e in events] == list(range(events[0].id, events[0].id + 5))
    for event, lock in ((events[2], again), (events[4], taken)):
        assert (event.lock.resource, event.lock.version, event.lock.owner_id) == (
            lock.resource, lock.version, lock.owner.id if lock.owner else None
        )
        assert (event.lock.locked_at_ms, event.lock.timeout_ms) == (
            round(lock.time * 1000), round(lock.timeout * 1000)
        )
        assert (event.lock.stealable, event.lock.infinite) == (lock.stealable, lock.infinite)


def test_an_event_the_database_refuses_undoes_its_acquisition(
    make_app: AppFactory, database_url: str
) -> None:
    """The grant and its event are one transaction in the database too: when the event's
    INSERT fails there (the id the counter hands out is taken already), the grant is undone.
    (PostgreSQL sends the acquisition as one batch with no BEGIN or COMMIT of its own,
    which the server runs as one implicit transaction: were each statement committed
    alone, the lock would stay, without its event.)"""
    engine = engine_of(make_app(database_url=database_url))
    engine.acquire("/docs/x", "alice")
    log: Any = engine.events
    taken = {"id": log.head() + 1, "time_ms": 0, "event": "acquired", "by_id": None,
             "by_name": None, "resource": "/elsewhere", "version": 1, "owner_id": None,
             "owner_name": None, "owner_url": None, "stealable": True, "infinite": False,
             "timeout_ms": 1, "locked_at_ms": 0}
    with log.store.engine.begin() as conn:
        conn.execute(log.table.insert().values(**taken))
    for key in ("/docs/a", "/root"):  # (a key with an ancestor, and one without)
        with pytest.raises(sa.exc.IntegrityError):
            engine.acquire(key, "alice")
        assert engine.get(key) is None
        assert _stored_or_none(engine, key) is None
    assert log.head() == taken["id"] - 1


def _stored_or_none(engine: LockEngine, resource: str) -> Any:
    store: Any = engine.store
    with store.engine.connect() as conn:
        return conn.execute(store._select_row, {"resource": resource}).first()
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
