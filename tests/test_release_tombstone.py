"""A released (or purged) lock stays released when the database clock steps back.

A released row keeps its key, its ``version`` and the instant it was last locked; only the
secret says whether a grant is there. The test steps the clock **the store reads** (a store
whose clock expression is shifted by a bind the test sets), never the host's clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest import drop_tables
from helpers.racers import make_request

from flask_locking.store import BACKENDS, engine_for_uri
from flask_locking.store.sql import SQLStore

HOUR_MS = 3_600_000


class Clock:
    """The shift (ms) added to every clock reading of the store built by :func:`skewed`."""

    offset_ms = 0


def skewed(url: str, table: str, clock: Clock) -> SQLStore:
    """A store of ``url``'s backend whose database clock reads ``clock.offset_ms`` off."""
    engine = engine_for_uri(url)
    base = BACKENDS[engine.dialect.name]

    class SkewedStore(base):  # type: ignore[valid-type, misc]
        def now_expression(self) -> sa.ColumnElement[int]:
            shift = sa.bindparam(
                "clock_shift", callable_=lambda: clock.offset_ms, type_=sa.BigInteger
            )
            return super().now_expression() + shift  # type: ignore[no-any-return]

    return SkewedStore(engine, sa.MetaData(), table)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database_url: str, table_name: str, clock: Clock) -> Iterator[SQLStore]:
    store = skewed(database_url, table_name, clock)
    store.create_schema()
    yield store
    store.dispose()
    if not database_url.startswith("sqlite"):
        drop_tables(database_url, table_name)


def test_the_shift_reaches_the_database_clock(store: SQLStore, clock: Clock) -> None:
    now = store.now_ms()
    clock.offset_ms = -HOUR_MS
    assert store.now_ms() < now - HOUR_MS / 2


@pytest.mark.parametrize("end", ["release", "purge"])
def test_ended_lock_stays_ended_when_the_clock_steps_back(
    store: SQLStore, clock: Clock, end: str
) -> None:
    row = store.acquire(make_request("/docs/1", "ann", 50 if end == "purge" else 60_000)).row
    if end == "release":
        assert store.release(row)
    else:
        for _ in range(500):
            if store.now_ms() >= row.expires_ms:
                break
            time.sleep(0.01)
        assert store.purge_expired() == 1
    clock.offset_ms = -HOUR_MS  # the database clock steps back an hour
    assert store.live("/docs/1") is None
    assert store.live_among(["/docs/1", "/docs"]) == []
    assert store.live_rows() == []
    assert store.purge_expired() == 0
    # Another user gets a new grant at once; the version still only grows.
    again = store.acquire(make_request("/docs/1", "bob", 60_000))
    assert again.granted and again.row.version == row.version + 1
    assert again.row.owner_key == "u:bob"


def test_released_infinite_lock_does_not_cover_when_the_clock_steps_back(
    store: SQLStore, clock: Clock
) -> None:
    top = store.acquire(make_request("/a", "ann", 60_000, infinite=True)).row
    below = store.acquire(make_request("/q/r", "ann", 60_000)).row
    assert store.release(top) and store.release(below)
    clock.offset_ms = -HOUR_MS
    assert store.acquire(make_request("/a/b", "bob", 60_000)).granted
    assert store.acquire(make_request("/q", "bob", 60_000, infinite=True)).granted


def test_owner_relocking_a_released_lock_gets_a_new_grant(store: SQLStore, clock: Clock) -> None:
    row = store.acquire(make_request("/docs/1", "ann", 60_000)).row
    assert store.release(row)
    clock.offset_ms = -HOUR_MS
    again = store.acquire(make_request("/docs/1", "ann", 60_000))
    # not a "refresh" of the released grant: a new secret (so a new token) and version
    assert again.granted and again.row.secret != row.secret
    assert again.row.version == row.version + 1
