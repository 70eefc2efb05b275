"""``LOCKING_DATABASE_URI = "memory://"`` through a whole app: requests racing in threads,
the event streams, the lock listing, and what it cannot do (hold a lock in the host's
transaction). The store contract itself runs in test_store_contract.py."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import warnings
from pathlib import Path

import pytest
from conftest import AppFactory
from flask import Flask
from test_events import (  # the in-process event promises, here on memory://
    FAST,
    test_every_change_is_an_event_without_a_token,
    test_expiry_is_an_event_once,
    test_reconnect_replays_what_was_missed,
    test_the_multi_resource_stream_filters,
)
from test_listing import test_bulk_release_outcomes, test_listing_filters_and_tokens

from flask_locking import LockLost
from flask_locking.store import MemoryStore
from flask_locking.writes import can_hold, hold

__all__ = [
    "test_bulk_release_outcomes",
    "test_every_change_is_an_event_without_a_token",
    "test_expiry_is_an_event_once",
    "test_listing_filters_and_tokens",
    "test_reconnect_replays_what_was_missed",
    "test_the_multi_resource_stream_filters",
]

THREADS = 8


@pytest.fixture
def database_url() -> str:
    return "memory://"


@pytest.fixture
def fast_app(make_app: AppFactory) -> Flask:
    return make_app(database_url="memory://", **FAST)


def test_the_app_keeps_its_locks_in_memory(make_app: AppFactory) -> None:
    app = make_app(database_url="memory://")
    assert app.test_client().post("/docs/1/@lock", headers={"X-User": "ann"}).status_code == 200
    state = app.extensions["locking"]
    assert isinstance(state.engine.store, MemoryStore)
    assert state.engine.events is not None  # the streams are served
    assert not (Path(app.instance_path) / "locking.sqlite3").exists()  # no SQLite file either


def test_threads_racing_through_requests_see_one_store(make_app: AppFactory) -> None:
    app = make_app(database_url="memory://")
    barrier = threading.Barrier(THREADS)
    statuses: list[int] = []
    guard = threading.Lock()

    def contender(i: int) -> None:
        client = app.test_client()
        barrier.wait(timeout=30)
        response = client.post("/docs/shared/@lock", headers={"X-User": f"user{i}"})
        with guard:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] + [409] * (THREADS - 1)


def test_a_lock_cannot_be_held_in_a_host_transaction(make_app: AppFactory) -> None:
    """hold() needs the locks in the host's database; with memory:// the host fences."""
    app = make_app(database_url="memory://")
    with app.app_context():
        lock = app.extensions["locking"].extension.acquire("/docs/1", "ann")
        session = _Session()
        assert can_hold(session) is False
        with pytest.raises(TypeError, match="fence the records instead"):
            hold(session, lock)
        with pytest.raises(LockLost):
            hold(session, None)  # no verified lock: refused before the store is asked


class _Session:
    """A host session: never asked anything, since the store cannot hold."""

    def rollback(self) -> None:
        pass


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_forked_with_a_memory_store_is_warned(tmp_path: Path) -> None:
    """A worker forked from a process that holds a memory store logs that its locks are
    not shared (a pre-forking server on memory:// would double-grant)."""
    store = MemoryStore()
    log_file = tmp_path / "child.log"
    handler = logging.FileHandler(log_file)
    logger = logging.getLogger("flask_locking")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():  # (Python 3.12+ warns about forking with threads)
            warnings.simplefilter("ignore", DeprecationWarning)
            child = multiprocessing.get_context("fork").Process(target=_nothing)
            child.start()
        child.join(30)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert child.exitcode == 0
    assert "memory:// lock store was inherited by a forked process" in log_file.read_text()
    assert store.live("/x") is None  # (the parent's store, kept alive until the fork)


def _nothing() -> None:
    pass
