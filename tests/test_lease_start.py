"""A lease starts when it is granted: the database clock after every wait, never before.

A second connection of the test's own holds a row lock the acquisition must wait for (the
lock's own row, or on MariaDB the row of an ancestor that the overlap check reads with a
lock) for longer than the requested timeout. The server tells the test when the acquirer
is waiting. The grant that comes back must be live: its lease starts no earlier than the
moment the row was let go, its first guarded write goes through, and nobody else gets the
lock meanwhile.

SQLite has no such gap: ``BEGIN IMMEDIATE`` waits for the write lock before the statement
that reads the clock runs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import AppFactory
from helpers import racers
from test_faults import RowBlocker, wait_until_blocked

from flask_locking import LockConflict
from flask_locking.signals import lock_refreshed

#: How long the row stays locked; the requested lease (1 s) is shorter.
HELD_FOR = 2.5
#: A lease meant to run out during the wait. It must outlast the time the request takes to
#: reach the wait on a loaded machine: on MariaDB (READ COMMITTED) an UPDATE whose row no
#: longer matches skips a locked row without waiting, so a lease that ran out first would
#: never wait. The row is then held until the lease is over on the database clock (within
#: the 5 s lock wait that LOCKING_STORE_TIMEOUT allows).
LAPSING = 3


def hold_until_lapsed(store: Any, expires_at: float) -> None:
    """Keep the row locked until ``expires_at`` (epoch seconds) is past on the store clock."""
    while store.now_ms() <= expires_at * 1000 + 100:
        time.sleep(0.05)


def behind_held_row(
    database_url: str,
    table_name: str,
    store: Any,
    held: Any,
    send: Callable[[], Any],
    *,
    share: bool = False,
    until_lapsed: bool = False,
) -> tuple[Any, int]:
    """Send a request (``send``) while another connection holds ``held``'s row; let go once
    the request waits for it and :data:`HELD_FOR` has passed (``until_lapsed``: also until
    ``held``'s lease is over on the database clock). The response, and the store clock (ms)
    when the row was let go."""
    blocker = RowBlocker(database_url, table_name, held.resource, share=share)
    box: dict[str, Any] = {}
    try:
        thread = threading.Thread(target=lambda: box.update(response=send()), daemon=True)
        thread.start()
        wait_until_blocked(database_url, table_name, box)
        time.sleep(HELD_FOR)
        if until_lapsed:
            hold_until_lapsed(store, held.expires_at)
        let_go_ms = store.now_ms()
    finally:
        blocker.release()
    thread.join(30)
    assert not thread.is_alive()
    return box["response"], let_go_ms


@pytest.fixture(params=["postgresql", "mysql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _acquire_in_background(client: Any, path: str, box: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        box["response"] = client.post(
            f"{path}/@lock", json={"timeout": 1}, headers={"X-User": "bob"}
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("blocked", ["own row", "ancestor row"])
def test_lease_starts_after_the_wait(
    make_app: AppFactory, database_url: str, table_name: str, backend: str, blocked: str
) -> None:
    if blocked == "ancestor row" and backend == "postgresql":
        pytest.skip("PostgreSQL serialises overlaps with advisory locks taken before the upsert")
    app = make_app(database_url=database_url)
    client = app.test_client()
    # Leave a released row behind to be locked by the blocker: the lock's own row, or an
    # ancestor's row that held an infinite-depth lock.
    blocked_path = "/docs/1" if blocked == "own row" else "/docs"
    locking = app.extensions["locking"]
    ended = locking.engine.acquire(
        blocked_path, "ann", depth="infinity" if blocked_path == "/docs" else 0
    )
    locking.engine.release(blocked_path, token=ended.token)

    store = racers.open_store(database_url, table_name)
    blocker = RowBlocker(database_url, table_name, blocked_path)
    box: dict[str, Any] = {}
    try:
        thread = _acquire_in_background(client, "/docs/1", box)
        wait_until_blocked(database_url, table_name, box)
        time.sleep(HELD_FOR)  # longer than the requested lease, while the acquirer waits
        let_go_ms = store.now_ms()
    finally:
        blocker.release()
    thread.join(30)
    assert not thread.is_alive()
    store.dispose()

    response = box["response"]
    assert response.status_code == 200, response.get_json()
    lock = response.get_json()
    assert lock["time"] * 1000 >= let_go_ms, "the lease started before the grant"
    # The grant is live: its first guarded write goes through, and nobody else gets it.
    write = client.patch("/docs/1", headers={"X-User": "bob", "Lock-Token": lock["token"]})
    assert write.status_code == 200, write.get_json()
    other = client.post("/docs/1/@lock", headers={"X-User": "carol"})
    assert other.status_code == 409
    assert other.get_json()["lock"]["version"] == lock["version"]


def test_holder_whose_lease_ended_during_the_wait_loses(
    make_app: AppFactory, database_url: str, table_name: str
) -> None:
    """The winner is decided at the clock after the wait, like the lease: a holder whose
    lease ran out while the acquirer waited for the row no longer holds it."""
    app = make_app(database_url=database_url)
    client = app.test_client()
    held = app.extensions["locking"].engine.acquire("/docs/1", "ann", timeout=1)
    blocker = RowBlocker(database_url, table_name, "/docs/1")
    box: dict[str, Any] = {}
    try:
        thread = _acquire_in_background(client, "/docs/1", box)
        wait_until_blocked(database_url, table_name, box)
        time.sleep(HELD_FOR)  # ann's 1 s lease runs out while bob waits
    finally:
        blocker.release()
    thread.join(30)
    assert not thread.is_alive()
    response = box["response"]
    assert response.status_code == 200, response.get_json()
    lock = response.get_json()
    assert lock["creator"] == "bob" and lock["version"] == held.version + 1


def test_refresh_is_decided_and_stamped_after_the_wait(
    make_app: AppFactory, database_url: str, table_name: str
) -> None:
    """A refresh that waited for the row restarts the lease at the clock after the wait,
    and one whose lease ran out during the wait is refused (it is not revived)."""
    app = make_app(database_url=database_url)
    client = app.test_client()
    engine = app.extensions["locking"].engine
    store = racers.open_store(database_url, table_name)
    results = {}
    for name, lease in (("live", 30), ("lapsed", LAPSING)):
        held = engine.acquire(f"/docs/{name}", "bob", timeout=lease)
        refresh = functools.partial(
            client.patch,
            f"/docs/{name}/@lock",
            json={"timeout": 1},
            headers={"X-User": "bob", "Lock-Token": held.token},
        )
        results[name] = behind_held_row(
            database_url, table_name, store, held, refresh, until_lapsed=name == "lapsed"
        )
    store.dispose()
    live, let_go_ms = results["live"]
    assert live.status_code == 200, live.get_json()
    assert live.get_json()["time"] * 1000 >= let_go_ms, (
        "the refreshed lease started before the wait"
    )
    lapsed, _ = results["lapsed"]
    assert lapsed.status_code == 409, lapsed.get_json()  # gone: not brought back
    assert client.get("/docs/lapsed/@lock").get_json()["locked"] is False


@pytest.mark.parametrize("share", [False, True], ids=["for update", "for share"])
def test_refresh_on_write_is_decided_and_stamped_after_the_wait(
    make_app: AppFactory, database_url: str, table_name: str, share: bool
) -> None:
    """``LOCKING_REFRESH_ON_WRITE`` restarts the lease at the clock after any wait for the
    row (``share``: the row held the way :func:`~flask_locking.writes.hold` holds it), and a
    write whose lease ran out during the wait is refused as stale, not revived."""
    app = make_app(database_url=database_url, LOCKING_REFRESH_ON_WRITE=True)
    client = app.test_client()
    engine = app.extensions["locking"].engine
    store = racers.open_store(database_url, table_name)
    refreshed: list[Any] = []
    results = {}
    for name, lease in (("live", 30), ("lapsed", LAPSING)):
        held = engine.acquire(f"/docs/{name}", "bob", timeout=lease)
        write = functools.partial(
            client.patch, f"/docs/{name}", headers={"X-User": "bob", "Lock-Token": held.token}
        )
        with lock_refreshed.connected_to(lambda _app, lock: refreshed.append(lock)):
            results[name] = behind_held_row(
                database_url,
                table_name,
                store,
                held,
                write,
                share=share,
                until_lapsed=name == "lapsed",
            )
    store.dispose()
    lapsed, _ = results["lapsed"]
    assert lapsed.status_code == 412, lapsed.get_json()  # refused as stale: not revived
    live, let_go_ms = results["live"]
    assert live.status_code == 200, live.get_json()
    lock = client.get("/docs/live/@lock").get_json()
    assert lock["time"] * 1000 >= let_go_ms, "the refreshed lease started before the wait"
    assert client.get("/docs/lapsed/@lock").get_json()["locked"] is False
    assert [lock.resource for lock in refreshed] == ["/docs/live"]


@pytest.mark.parametrize("blocked", ["own row", "ancestor row"])
def test_overlap_is_decided_after_the_wait(
    make_app: AppFactory, database_url: str, table_name: str, backend: str, blocked: str
) -> None:
    """An infinite-depth lock above that ran out while the acquirer waited (for its own
    row, or on MariaDB for the ancestor's row its overlap check reads) no longer blocks it:
    the overlap is decided at the clock after the wait, like the lease."""
    if blocked == "ancestor row" and backend == "postgresql":
        pytest.skip("PostgreSQL serialises overlaps with advisory locks taken before the upsert")
    app = make_app(database_url=database_url)
    client = app.test_client()
    engine = app.extensions["locking"].engine
    # Leave a released row behind on /docs/1, so that the blocker has a row to lock.
    engine.release("/docs/1", token=engine.acquire("/docs/1", "ann").token)
    ann = engine.acquire("/docs", "ann", depth="infinity", timeout=1)
    store = racers.open_store(database_url, table_name)
    blocker = RowBlocker(database_url, table_name, "/docs/1" if blocked == "own row" else "/docs")
    box: dict[str, Any] = {}
    try:
        thread = _acquire_in_background(client, "/docs/1", box)
        wait_until_blocked(database_url, table_name, box)
        time.sleep(HELD_FOR)  # ann's 1 s lease on /docs runs out while bob waits
        let_go_ms = store.now_ms()
    finally:
        blocker.release()
    thread.join(30)
    assert not thread.is_alive()
    store.dispose()
    assert ann.expires_at * 1000 <= let_go_ms  # it had run out when bob got the row
    response = box["response"]
    assert response.status_code == 200, response.get_json()
    lock = response.get_json()
    assert lock["creator"] == "bob" and lock["time"] * 1000 >= let_go_ms
    # Granted once: nobody else gets /docs/1, nor /docs over it.
    assert client.post("/docs/1/@lock", headers={"X-User": "carol"}).status_code == 409
    with pytest.raises(LockConflict):
        engine.acquire("/docs", "carol", depth="infinity")
