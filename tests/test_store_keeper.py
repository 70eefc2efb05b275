"""The store keeps idle connections between hot operations (``store/keeper.py``).

What must hold, on every backend: operations stop checking connections out of the pool
(that is the point: no pre-ping, no rollback on return), yet SQLAlchemy's own checkouts
always find room, no thread waits for a connection another thread keeps, a connection with
a transaction open is never kept, a kept connection that died is replaced, the PostgreSQL
watchdog never cuts a connection that is only parked, and a forked child never uses or
closes the parent's connections.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from flask_locking.errors import StoreUnavailable
from flask_locking.store import store_from_uri
from flask_locking.store.base import AcquireRequest, LockRow
from flask_locking.store.keeper import ConnectionKeeper
from flask_locking.store.sql import SQLStore
from tests.conftest import drop_tables


def _request(resource: str, owner: str = "u:ann") -> AcquireRequest:
    row = LockRow(resource, os.urandom(16).hex(), owner, owner, None, None, True, False,
                  60_000, 0, 0)
    return AcquireRequest.of(row)


@pytest.fixture
def make_store(database_url: str, table_name: str) -> Iterator[Any]:
    made: list[SQLStore] = []

    def factory(**engine_options: Any) -> SQLStore:
        store = store_from_uri(database_url, table_name=table_name, timeout=1.0,
                               engine_options=engine_options)
        assert isinstance(store, SQLStore)
        store.create_schema()
        made.append(store)
        return store

    yield factory
    for store in made:
        store.dispose()
    if not database_url.startswith("sqlite"):
        drop_tables(database_url, table_name)


def _cycle(store: SQLStore, resource: str) -> None:
    row = store.acquire(_request(resource)).row
    assert store.live(resource) is not None
    assert store.live_among([resource, "/docs"])
    assert store.release(row)


def test_hot_operations_reuse_kept_connections(make_store: Any) -> None:
    store = make_store()
    checkouts: list[int] = []
    sa.event.listen(store.engine, "checkout", lambda *args: checkouts.append(1))
    _cycle(store, "/docs/warm")
    before = len(checkouts)
    for n in range(20):
        _cycle(store, f"/docs/{n}")
    assert len(checkouts) == before, "each operation went back to the pool"
    assert store.keeper.parked == 1


def test_sqlalchemy_checkouts_always_find_room(make_store: Any) -> None:
    # A pool of two and no overflow: were every busy thread to keep its connection, the
    # listing (a SQLAlchemy checkout) would wait for the pool and time out.
    store = make_store(pool_size=2, max_overflow=0, pool_timeout=1)
    assert store.keeper.limit == 1
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            # both hold a connection at once (inside the operation), then both hand it back
            with store.operation() as session:
                barrier.wait(timeout=5)
                session.first(store._select_live_one, {"resource": f"/docs/{n}"})
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert store.keeper.parked == 1
    assert store.live_rows() == []  # SQLAlchemy's own checkout: found the free slot
    # and many threads, one after another and at once, never starve each other
    done: list[int] = []

    def many(n: int) -> None:
        for i in range(10):
            _cycle(store, f"/docs/t{n}-{i}")
        done.append(n)

    threads = [threading.Thread(target=many, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(done) == list(range(6))


def test_a_connection_inside_a_transaction_is_never_kept(make_store: Any) -> None:
    store = make_store()
    keeper = ConnectionKeeper(store.engine, store.connection_is_idle)
    connection = keeper.checkout()
    cursor = connection.cursor()
    cursor.execute("BEGIN")
    cursor.execute(f"SELECT count(*) FROM {store.table.name}")
    cursor.fetchall()
    assert not store.connection_is_idle(connection.dbapi_connection)
    keeper.checkin(connection)
    assert keeper.parked == 0  # back to the pool, which rolls it back
    connection = keeper.checkout()  # from the pool: rolled back on its return
    assert store.connection_is_idle(connection.dbapi_connection)
    keeper.checkin(connection)
    assert keeper.parked == 1
    keeper.close()
    assert keeper.parked == 0


def _kill(store: SQLStore, connection: Any) -> None:
    """End the server session of ``connection`` from another connection."""
    engine = sa.create_engine(store.engine.url)
    try:
        with engine.begin() as conn:
            if store.engine.dialect.name == "postgresql":
                pid = connection.dbapi_connection.info.backend_pid
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            else:
                conn.execute(sa.text(f"KILL {connection.dbapi_connection.thread_id()}"))
    finally:
        engine.dispose()
    time.sleep(0.2)


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_kept_connection_that_died_is_replaced(make_store: Any) -> None:
    store = make_store()
    _cycle(store, "/docs/1")
    # Idle longer than ping_after: pinged when taken, found dead, replaced; nothing fails.
    store.keeper.ping_after = 0.0
    _kill(store, store.keeper._idle[-1][0])
    _cycle(store, "/docs/2")
    # Trusted (used within ping_after): the operation that finds it dead answers
    # "unavailable", and the connection is never kept again; the next one works.
    store.keeper.ping_after = 3600.0
    _kill(store, store.keeper._idle[-1][0])
    with pytest.raises(StoreUnavailable):
        store.live("/docs/3")
    assert store.keeper.parked == 0
    _cycle(store, "/docs/3")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_watchdog_never_cuts_a_parked_connection(make_store: Any) -> None:
    store = make_store()
    store.keeper.ping_after = 3600.0  # a cut connection would fail the next operation
    _cycle(store, "/docs/1")
    time.sleep(store.retry_budget + 1.0 + 0.6)  # past the watchdog's deadline (1 s + 1 s)
    _cycle(store, "/docs/2")


def _forked_child(store: SQLStore, queue: Any) -> None:
    try:
        for n in range(5):
            _cycle(store, f"/forked/{n}")
        queue.put("ok")
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        queue.put(repr(error))


def test_a_forked_child_leaves_the_parents_connections_alone(
    make_store: Any, database_url: str, table_name: str
) -> None:
    store = make_store()
    _cycle(store, "/docs/1")
    parked = store.keeper._idle[-1][0]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forked_child, args=(store, queue))
    child.start()
    child.join(timeout=60)
    assert queue.get(timeout=5) == "ok"
    assert child.exitcode == 0
    # the parent's kept connection still works (the child neither used nor closed it)
    assert store.keeper._idle[-1][0] is parked
    _cycle(store, "/docs/2")
    assert store.keeper._idle[-1][0] is parked


def test_a_parked_connection_older_than_pool_recycle_is_replaced(make_store: Any) -> None:
    # (found by review: a kept connection skipped the pool's checkout, where pool_recycle
    # applies; with pre-ping off, one dropped by the server's idle timeout answered 503)
    store = make_store(pool_recycle=1, pool_pre_ping=False)
    _cycle(store, "/docs/1")
    old = store.keeper._idle[-1][0].dbapi_connection
    time.sleep(1.3)
    _cycle(store, "/docs/2")
    assert store.keeper._idle[-1][0].dbapi_connection is not old


def test_a_disposed_engine_gets_no_connection_of_its_old_pool(make_store: Any) -> None:
    # (found by review: after engine.dispose() the parked connection of the old pool was
    # used on, uncounted by the new pool, so the store exceeded its pool size)
    store = make_store()
    _cycle(store, "/docs/1")
    old = store.keeper._idle[-1][0]
    store.engine.dispose()
    _cycle(store, "/docs/2")
    kept = store.keeper._idle[-1][0]
    assert kept is not old and kept._pool is store.engine.pool
    assert store.engine.pool.checkedout() == store.keeper.parked == 1


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_event_prune_needs_no_second_connection(
    make_store: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The PostgreSQL event log prunes after the commit on a hot-path connection: pruned
    with a SQLAlchemy checkout while the operation held its own, it waited out the pool
    (the other connection busy, the operation's own kept idle) and failed (found by review)."""
    import flask_locking.store.events as events
    from flask_locking.engine import LockEngine

    monkeypatch.setattr(events, "PRUNE_EVERY", 1)  # (every 256th event otherwise)
    store = make_store(pool_size=2, max_overflow=0, pool_timeout=1)
    log = store.event_log()
    log.create_schema()
    engine = LockEngine(store, secret_key="k", events=log)
    inside, done = threading.Event(), threading.Event()

    def busy() -> None:  # another request's operation holds the pool's other connection
        with store.operation() as session:
            session.first(sa.text("SELECT 1"), once=True)
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        assert inside.wait(10)
        with caplog.at_level("ERROR", logger="flask_locking"):
            lock = engine.acquire("/docs/1", "ann")
            engine.release("/docs/1", token=lock.token)
    finally:
        done.set()
        thread.join()
    assert not [r for r in caplog.records if "prune" in r.getMessage()], caplog.text


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_one_dead_connection_retires_every_older_kept_one(make_store: Any) -> None:
    """After a server restart every kept connection is dead: the first operation to find
    one fails, and the pool's invalidation (as SQLAlchemy does on a disconnect) retires the
    other kept ones too, so the next operation works (it failed once per kept connection)."""
    store = make_store()
    store.keeper.ping_after = 3600.0  # trusted: a dead one is found only by using it
    barrier = threading.Barrier(3)

    def hold(n: int) -> None:
        with store.operation() as session:
            session.first(store._select_live_one, {"resource": f"/docs/{n}"})
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.keeper.parked == 3
    for connection, _since in list(store.keeper._idle):
        _kill(store, connection)
    with pytest.raises(StoreUnavailable):
        store.live("/docs/1")
    assert store.live("/docs/1") is None  # a fresh connection, not the next dead one
    _cycle(store, "/docs/2")


@pytest.mark.parametrize("watched", [False, True], ids=["alone", "as-operation"])
def test_a_read_on_a_dead_kept_connection_fails_once_then_works(
    make_store: Any, watched: bool
) -> None:
    # SQLite reads run straight on a kept connection's cursor (SQLStore.read_rows) unless
    # a listener watches statements; either way a connection that broke answers
    # "unavailable" once, is never kept again, and the next read gets a new one.
    store = make_store()
    if watched:
        sa.event.listen(store.engine, "before_cursor_execute", lambda *args: None)
    row = store.acquire(_request("/docs/1")).row
    assert store.live("/docs/1") == row
    kept = store.keeper._idle[-1][0]
    kept.dbapi_connection.close()  # SQLite: "Cannot operate on a closed database."
    with pytest.raises(StoreUnavailable):
        store.live_among(["/docs/1", "/docs"])
    assert all(c is not kept for c, _ in store.keeper._idle)
    assert store.live("/docs/1") == row
    assert store.engine.pool.checkedout() == store.keeper.parked


def test_reads_alone_leave_no_transaction_and_see_other_writers(make_store: Any) -> None:
    # Two stores on one database (two processes, say): a read on a kept connection never
    # keeps a snapshot, so each read sees what the other store committed just before.
    first, second = make_store(), make_store()
    for n in range(3):
        assert first.live_among([f"/docs/{n}", "/docs"]) == []
        row = second.acquire(_request(f"/docs/{n}")).row
        assert first.live_among([f"/docs/{n}", "/docs"]) == [row]
        assert second.release(row)
        assert first.live(f"/docs/{n}") is None
    assert first.engine.pool.checkedout() == first.keeper.parked
