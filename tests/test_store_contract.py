"""The store contract (:mod:`flask_locking.testing`) on every built-in store: SQLite,
PostgreSQL and MariaDB through one parametrised fixture, and ``memory://``.

The SQL stores also race between OS processes here (schema creation and the shared key);
the herds and hand-offs between processes are in ``test_races.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import drop_tables
from helpers import procs, racers

from flask_locking.store import MemoryStore, SQLStore, store_from_uri
from flask_locking.testing import StoreContract


class TestSQLStores(StoreContract):
    """SQLite, PostgreSQL and MariaDB (the ``backend`` fixture)."""

    @pytest.fixture
    def store(self, database_url: str, table_name: str) -> Iterator[SQLStore]:
        store = racers.open_store(database_url, table_name)
        yield store
        # every operation, refused ones included, gave its connection back (to the pool, or
        # parked idle for the next operation: no transaction open, see store/keeper.py)
        assert store.engine.pool.checkedout() == store.keeper.parked
        store.keeper.close()
        assert store.engine.pool.checkedout() == 0
        store.dispose()
        if not database_url.startswith("sqlite"):
            drop_tables(database_url, table_name)


class TestMemoryStore(StoreContract):
    """``memory://``, built from its URI as an app builds it."""

    @pytest.fixture
    def store(self) -> MemoryStore:
        store = store_from_uri("memory://")
        assert isinstance(store, MemoryStore)
        return store


def test_each_memory_uri_is_a_store_of_its_own() -> None:
    first, second = store_from_uri("memory://"), store_from_uri("memory://")
    first.acquire(racers.make_request("/docs/1", "ann", 60_000))
    assert second.live("/docs/1") is None


def test_processes_race_to_create_schema_and_share_one_key(
    database_url: str, table_name: str
) -> None:
    """Four app servers start together on a database without the tables: all create them
    without an error, and all end up with the same generated HMAC key."""
    try:
        messages = procs.run(
            racers.create_and_share, [(database_url, table_name, p) for p in range(4)]
        )
        keys = {m[2] for m in messages}
        assert len(keys) == 1, keys
        assert keys.pop() in {f"candidate-of-{p}" for p in range(4)}
        assert sorted(m[3] for m in messages) == [1, 1, 1, 1]
    finally:
        if not database_url.startswith("sqlite"):
            drop_tables(database_url, table_name)
