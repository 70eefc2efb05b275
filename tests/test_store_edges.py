"""Store edges the contract tests leave open, on SQLite, PostgreSQL and MariaDB: the exact
expiry millisecond on the database clock, refresh/release/purge of expired grants, a purge
racing a new grant, the overlap check's clock, and the SQLite WAL switch under contention.

The database clock is pinned by giving a store a constant ``now_expression`` (the backend
hook every statement reads the clock through): a store frozen at ``T`` writes grants locked
at ``T``, and a second store on the same table frozen at ``T + timeout`` reads them at their
exact expiry millisecond. The clock is the environment here; the comparisons are under test.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import drop_tables
from helpers import racers
from helpers.racers import make_request

from flask_locking.store import HeldElsewhere, LockRow, create_store
from flask_locking.store.sql import SQLStore

LEASE = 1000  # ms


@pytest.fixture
def store(database_url: str, table_name: str) -> Iterator[SQLStore]:
    store = racers.open_store(database_url, table_name)
    store.create_schema()
    yield store
    store.dispose()
    if not database_url.startswith("sqlite"):
        drop_tables(database_url, table_name)


@pytest.fixture
def frozen(store: SQLStore, table_name: str) -> Iterator[Callable[[int], SQLStore]]:
    """``frozen(ms)``: a store on the same table whose database clock reads ``ms``."""
    made: list[SQLStore] = []

    def at(ms: int) -> SQLStore:
        cls = type(store)
        stopped = type(f"Frozen{cls.__name__}", (cls,), {
            "now_expression": lambda self: sa.literal(ms, sa.BigInteger),
        })
        instance: SQLStore = stopped(store.engine, sa.MetaData(), table_name)
        made.append(instance)
        return instance

    yield at


def test_a_grant_expires_at_its_exact_millisecond(
    store: SQLStore, frozen: Callable[[int], SQLStore]
) -> None:
    start = store.now_ms()
    row = frozen(start).acquire(make_request("/docs/1", "ann", LEASE)).row
    assert (row.locked_at_ms, row.expires_ms) == (start, start + LEASE)
    before, at = frozen(start + LEASE - 1), frozen(start + LEASE)
    # One millisecond before expiry the grant is live for every read...
    assert before.live("/docs/1") == row
    assert before.live_among(["/docs/1"]) == [row]
    assert before.live_rows() == [row]
    with pytest.raises(HeldElsewhere):
        before.acquire(make_request("/docs/1", "bob", LEASE))
    # ...and at the expiry millisecond itself it is gone for every read and write.
    assert at.live("/docs/1") is None
    assert at.live_among(["/docs/1"]) == []
    assert at.live_rows() == []
    assert at.live_rows("/docs") == []
    assert at.refresh(row, LEASE) is None
    assert at.release(row) is False
    taken = at.acquire(make_request("/docs/1", "bob", LEASE))
    assert taken.granted and taken.row.owner_id == "bob" and taken.row.version == row.version + 1


def test_an_overlapping_lock_blocks_until_its_exact_millisecond(
    store: SQLStore, frozen: Callable[[int], SQLStore],
) -> None:
    start = store.now_ms()
    frozen(start).acquire(make_request("/a", "ann", LEASE, infinite=True))
    frozen(start).acquire(make_request("/b/c", "ann", LEASE))
    with pytest.raises(HeldElsewhere):
        frozen(start + LEASE - 1).acquire(make_request("/a/x", "bob", LEASE))
    with pytest.raises(HeldElsewhere):
        frozen(start + LEASE - 1).acquire(make_request("/b", "bob", LEASE, infinite=True))
    at = frozen(start + LEASE)
    assert at.acquire(make_request("/a/x", "bob", LEASE)).granted
    assert at.acquire(make_request("/b", "bob", LEASE, infinite=True)).granted


def test_purge_wipes_a_grant_at_its_exact_millisecond(
    store: SQLStore, frozen: Callable[[int], SQLStore]
) -> None:
    start = store.now_ms()
    first = frozen(start).acquire(make_request("/docs/1", "ann", LEASE)).row
    second = frozen(start).acquire(make_request("/docs/2", "ann", LEASE)).row
    before, at = frozen(start + LEASE - 1), frozen(start + LEASE)
    assert before.purge_expired() == 0
    assert before.purge_expired_rows() == []
    wiped = at.purge_expired_rows()
    assert sorted(wiped) == sorted([first, second])
    assert at.live_rows() == [] and at.purge_expired_rows() == []


def test_purge_counts_each_grant_once(store: SQLStore, frozen: Callable[[int], SQLStore]) -> None:
    start = store.now_ms()
    for number in range(3):
        frozen(start).acquire(make_request(f"/docs/{number}", "ann", LEASE))
    released = frozen(start).acquire(make_request("/docs/released", "ann", LEASE)).row
    assert frozen(start).release(released)
    at = frozen(start + LEASE)
    # The released row is a tombstone already: nothing of it is left to wipe.
    assert at.purge_expired() == 3
    assert at.purge_expired() == 0
    assert at.purge_expired_rows() == []
    assert frozen(start + 10 * LEASE).purge_expired_rows() == []


def test_refresh_and_release_of_an_expired_grant_change_nothing(store: SQLStore) -> None:
    row = store.acquire(make_request("/docs/1", "ann", 30)).row
    while store.now_ms() < row.expires_ms:  # the database clock decides; bounded by the lease
        time.sleep(0.005)
    assert store.refresh(row, 60_000) is None
    assert store.release(row) is False
    assert store.live("/docs/1") is None
    # Nothing revived it: another owner gets a new grant at once.
    taken = store.acquire(make_request("/docs/1", "bob", 60_000))
    assert taken.granted and taken.row.version == row.version + 1


def test_purge_reports_only_the_grants_it_wiped(
    store: SQLStore, frozen: Callable[[int], SQLStore], database_url: str, table_name: str,
) -> None:
    """A grant that someone re-acquires between the purge's read and its wipe is live
    again: it is neither wiped nor reported (an ``expired`` event for it would be false)."""
    start = store.now_ms()
    frozen(start).acquire(make_request("/docs/1", "ann", LEASE))
    kept = frozen(start).acquire(make_request("/docs/2", "ann", LEASE)).row
    at = frozen(start + LEASE)
    other = frozen(start + LEASE)  # the concurrent writer: another connection, same clock
    retaken: list[LockRow] = []
    started: list[bool] = []

    def regrant_first(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # Once only: the re-grant's own statements (its lease stamp is an UPDATE too) run
        # on the same engine and must not trigger another re-grant.
        if statement.lstrip().upper().startswith("UPDATE") and not started:
            started.append(True)
            retaken.append(other.acquire(make_request("/docs/1", "carol", 60_000)).row)

    sa.event.listen(store.engine, "before_cursor_execute", regrant_first)
    try:
        reported = at.purge_expired_rows()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", regrant_first)
    assert retaken, "the purge never reached its wipe"
    assert reported == [kept]
    assert at.live("/docs/1") == retaken[0]
    assert at.live("/docs/1").owner_id == "carol"  # type: ignore[union-attr]


@pytest.mark.parametrize("skew", [7200.0, -7200.0])
def test_overlap_check_reads_the_database_clock(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch, skew: float,
) -> None:
    """The app's clock running two hours off changes nothing: on SQLite too, where the
    database clock (julianday('now'), read in C) is the same host's, unaffected by Python."""
    held = store.acquire(make_request("/a", "ann", 60_000, infinite=True)).row
    short = store.acquire(make_request("/b", "ann", 30, infinite=True)).row
    while store.now_ms() < short.expires_ms:
        time.sleep(0.005)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew)
    with pytest.raises(HeldElsewhere) as info:
        store.acquire(make_request("/a/b", "bob", 60_000))
    assert info.value.row == held
    # ...and an expired one no longer blocks, even with the app's clock behind.
    assert store.acquire(make_request("/b/c", "bob", 60_000)).granted


def test_sqlite_new_file_switches_to_wal_while_another_process_holds_it(tmp_path: Any) -> None:
    """A second process starting on a new file finds it write-locked by the first; SQLite
    answers 'database is locked' at once (no busy handler for the journal switch), so the
    store retries until the holder commits."""
    path = tmp_path / "new.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other_app (x INTEGER)")
    # The holder commits a little later, from another thread (a process finishing its setup).
    releaser = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    releaser.start()
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        store = create_store(engine, table_name="lk_wal", timeout=60)
        store.create_schema()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert store.acquire(make_request("/docs/1", "ann", LEASE)).granted
    finally:
        releaser.join()
        holder.close()
        engine.dispose()


def test_sqlite_waits_for_writers_as_long_as_the_store_timeout(tmp_path: Any) -> None:
    """LOCKING_STORE_TIMEOUT is SQLite's busy timeout on every connection (not the
    driver's default of 5 seconds)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'busy.sqlite3'}")
    try:
        create_store(engine, table_name="lk_busy", timeout=12.5).create_schema()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 12500
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def test_a_refused_strengthening_leaves_the_owners_lock_as_it_was(store: SQLStore) -> None:
    """The owner asking for infinite depth over another owner's lock below is refused, and
    its own lock keeps its depth, timeout and lease start: nothing of the refused attempt is
    committed (on PostgreSQL the one-round-trip acquisition has stamped the owner's row
    before it learns that it lost, and must roll that back)."""
    mine = store.acquire(make_request("/docs", "ann", 60_000)).row
    theirs = store.acquire(make_request("/docs/1", "bob", 60_000)).row
    with pytest.raises(HeldElsewhere) as refused:
        store.acquire(make_request("/docs", "ann", 90_000, infinite=True))
    assert refused.value.row == theirs
    assert store.live("/docs") == mine
