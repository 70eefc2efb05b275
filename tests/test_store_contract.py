"""One contract for every lock store: the same tests on SQLite, PostgreSQL and MariaDB.

Each test talks to the store interface only (``acquire``/``refresh``/``release``/``live``/
``live_among``/``live_rows``/``purge_expired``/``shared_secret``/``create_schema``), the way
the engine does, and checks what SPEC §3 promises whatever the backend.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import drop_tables
from helpers import procs, racers
from helpers.racers import make_request

from flask_locking.store import HeldElsewhere, LockRow
from flask_locking.store.sql import SQLStore

LONG = 60_000


@pytest.fixture
def store(database_url: str, table_name: str) -> Iterator[SQLStore]:
    store = racers.open_store(database_url, table_name)
    store.create_schema()
    yield store
    # every operation, refused ones included, gave its connection back
    assert store.engine.pool.checkedout() == 0
    store.dispose()
    if not database_url.startswith("sqlite"):
        drop_tables(database_url, table_name)


def grant(store: SQLStore, resource: str, owner: str, timeout_ms: int = LONG, *, infinite: bool = False) -> LockRow:
    result = store.acquire(make_request(resource, owner, timeout_ms, infinite=infinite))
    assert result.granted, f"{owner} refreshed instead of getting a new grant on {resource}"
    return result.row


def refused(store: SQLStore, resource: str, owner: str, *, infinite: bool = False) -> LockRow:
    with pytest.raises(HeldElsewhere) as info:
        store.acquire(make_request(resource, owner, LONG, infinite=infinite))
    assert info.value.row is not None
    return info.value.row


def wait_expired(store: SQLStore, row: LockRow) -> None:
    """Wait until the database clock has passed ``row``'s expiry."""
    for _ in range(500):
        if store.now_ms() >= row.expires_ms:
            return
        time.sleep(0.01)
    raise AssertionError("the database clock never passed the lease")


# -- acquire --------------------------------------------------------------------------


def test_new_grant(store: SQLStore) -> None:
    before = store.now_ms()
    row = grant(store, "/docs/1", "ann", 1234)
    assert (row.resource, row.owner_key, row.owner_id, row.version) == ("/docs/1", "u:ann", "ann", 1)
    assert row.timeout_ms == 1234 and row.stealable is True and row.infinite is False
    assert before <= row.locked_at_ms <= store.now_ms()
    assert store.live("/docs/1") == row


def test_owner_again_refreshes_same_grant(store: SQLStore) -> None:
    first = grant(store, "/docs/1", "ann", 5000)
    result = store.acquire(make_request("/docs/1", "ann", 9000))
    assert not result.granted
    again = result.row
    assert (again.secret, again.version) == (first.secret, first.version)
    assert again.timeout_ms == 9000 and again.locked_at_ms >= first.locked_at_ms


def test_other_owner_is_refused_and_changes_nothing(store: SQLStore) -> None:
    held = grant(store, "/docs/1", "ann", LONG)
    holder = refused(store, "/docs/1", "bob")
    assert holder == held
    # every column of the holder's row is as it was (MySQL: no assignment leaked through)
    assert store.live("/docs/1") == held


def test_expired_grant_goes_to_the_next_owner(store: SQLStore) -> None:
    old = grant(store, "/docs/1", "ann", 30)
    wait_expired(store, old)
    assert store.live("/docs/1") is None
    new = grant(store, "/docs/1", "bob", LONG)
    assert new.version == old.version + 1 and new.secret != old.secret
    assert new.owner_key == "u:bob" and new.timeout_ms == LONG
    assert new.locked_at_ms >= old.expires_ms
    # the stale holder can neither refresh nor release the next holder's lock
    assert store.refresh(old, LONG) is None
    assert store.release(old) is False
    assert store.live("/docs/1") == new


def test_own_expired_grant_is_a_new_grant(store: SQLStore) -> None:
    old = grant(store, "/docs/1", "ann", 30)
    wait_expired(store, old)
    new = grant(store, "/docs/1", "ann", LONG)  # not a refresh: the old token must not come back
    assert new.version == old.version + 1 and new.secret != old.secret


# -- refresh and release ---------------------------------------------------------------


def test_refresh_is_compare_and_set(store: SQLStore) -> None:
    row = grant(store, "/docs/1", "ann", 5000)
    refreshed = store.refresh(row, 7000)
    assert refreshed is not None
    assert (refreshed.secret, refreshed.version, refreshed.timeout_ms) == (row.secret, row.version, 7000)
    assert refreshed.locked_at_ms >= row.locked_at_ms
    assert store.refresh(row._replace(secret="0" * 64), 7000) is None
    assert store.refresh(row._replace(version=row.version + 1), 7000) is None
    assert store.release(row)
    assert store.refresh(row, 7000) is None


def test_release_is_compare_and_set(store: SQLStore) -> None:
    first = grant(store, "/docs/1", "ann")
    assert store.release(first._replace(secret="0" * 64)) is False
    assert store.live("/docs/1") == first
    assert store.release(first) is True
    assert store.release(first) is False
    assert store.live("/docs/1") is None
    second = grant(store, "/docs/1", "bob")
    assert second.version == first.version + 1
    assert store.release(first) is False  # a stale holder never deletes the next lock
    assert store.live("/docs/1") == second


def test_version_never_goes_back(store: SQLStore) -> None:
    versions = []
    for owner in ("ann", "bob", "ann"):
        row = grant(store, "/docs/1", owner)
        versions.append(row.version)
        assert store.release(row)
    row = grant(store, "/docs/1", "cid", 30)
    versions.append(row.version)
    wait_expired(store, row)
    assert store.purge_expired() >= 1
    assert store.live_rows() == []
    versions.append(grant(store, "/docs/1", "dan").version)
    assert versions == [1, 2, 3, 4, 5]


def test_purge_leaves_live_locks(store: SQLStore) -> None:
    live = grant(store, "/docs/live", "ann")
    short = grant(store, "/docs/short", "bob", 30)
    wait_expired(store, short)
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    assert store.live("/docs/live") == live


# -- hierarchy -------------------------------------------------------------------------


def test_infinite_lock_covers_everything_below(store: SQLStore) -> None:
    top = grant(store, "/a", "ann", infinite=True)
    assert refused(store, "/a/b", "bob") == top
    assert refused(store, "/a/b/c", "bob", infinite=True) == top
    assert refused(store, "/a", "bob") == top
    # neighbours that merely share a prefix are not below /a
    for other in ("/ab", "/a0", "/a-b", "/b"):
        grant(store, other, "bob", infinite=True)
    assert store.live("/a/b") is None  # the refused upserts were rolled back


def test_infinite_request_sees_locks_below(store: SQLStore) -> None:
    deep = grant(store, "/x/y/z", "ann")
    assert refused(store, "/x", "bob", infinite=True) == deep
    assert refused(store, "/", "bob", infinite=True) == deep
    assert refused(store, "/x/y", "bob", infinite=True) == deep
    assert store.live("/x") is None and store.live("/x/y") is None  # rolled back
    # a depth-0 lock above, or an infinite lock below a depth-0 lock, do not overlap
    grant(store, "/x/y", "bob")
    grant(store, "/x/y/z/w", "cid", infinite=True)
    grant(store, "/x/yy", "dan", infinite=True)


def test_expired_infinite_lock_no_longer_covers(store: SQLStore) -> None:
    top = grant(store, "/a", "ann", 30, infinite=True)
    wait_expired(store, top)
    grant(store, "/a/b", "bob")
    below = grant(store, "/q/r", "ann", 30)
    wait_expired(store, below)
    grant(store, "/q", "bob", infinite=True)


def test_root_infinite_lock(store: SQLStore) -> None:
    root = grant(store, "/", "ann", infinite=True)
    assert refused(store, "/anything/at/all", "bob") == root


# -- keys and reads --------------------------------------------------------------------


def test_keys_are_case_sensitive(store: SQLStore) -> None:
    upper = grant(store, "/Docs/A", "ann", infinite=True)
    lower = grant(store, "/docs/a", "bob", infinite=True)
    assert upper.version == lower.version == 1
    grant(store, "/docs/A/x", "cid")  # not below /Docs/A
    assert store.live("/DOCS/A") is None
    assert [r.resource for r in store.live_among(["/Docs/A", "/DOCS/A"])] == ["/Docs/A"]
    assert [r.resource for r in store.live_rows("/docs")] == ["/docs/A/x", "/docs/a"]


def test_live_among_and_live_rows(store: SQLStore) -> None:
    for key in ("/p", "/p/q", "/p/q/r", "/pq", "/z"):
        grant(store, key, "ann")
    short = grant(store, "/p/gone", "ann", 30)
    wait_expired(store, short)
    assert sorted(r.resource for r in store.live_among(["/p", "/p/q", "/p/gone", "/nope"])) == ["/p", "/p/q"]
    assert [r.resource for r in store.live_rows("/p")] == ["/p", "/p/q", "/p/q/r"]
    assert [r.resource for r in store.live_rows()] == ["/p", "/p/q", "/p/q/r", "/pq", "/z"]


def test_database_clock_moves_forward(store: SQLStore) -> None:
    first = store.now_ms()
    time.sleep(0.02)
    assert store.now_ms() > first


# -- several processes starting at once ------------------------------------------------


def test_processes_race_to_create_schema_and_share_one_key(database_url: str, table_name: str) -> None:
    """Four app servers start together on a database without the tables: all create them
    without an error, and all end up with the same generated HMAC key."""
    try:
        messages = procs.run(racers.create_and_share, [(database_url, table_name, p) for p in range(4)])
        keys = {m[2] for m in messages}
        assert len(keys) == 1, keys
        assert keys.pop() in {f"candidate-of-{p}" for p in range(4)}
        assert sorted(m[3] for m in messages) == [1, 1, 1, 1]
    finally:
        if not database_url.startswith("sqlite"):
            drop_tables(database_url, table_name)
