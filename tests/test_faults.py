"""Faults on PostgreSQL and MariaDB: the database goes away while a lock is held, during an
acquire and during a release (docs/deployment.rst).

The shared servers are never stopped: the app reaches its database through a loopback
:class:`~helpers.proxy.Proxy` that the test takes down (every connection cut, new ones
refused) and brings back. A stuck transaction holding the lock's row is a direct
connection of the test's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import drop_tables
from flask import Flask
from helpers import racers
from helpers.app import create_app
from helpers.proxy import Proxy
from sqlalchemy.engine import make_url

STORE_TIMEOUT = 2.0
#: No request may take longer than this, whatever the database does (a hang check, far
#: above the store timeout; never a performance assertion).
HANG_BOUND = 5 * STORE_TIMEOUT
#: Store timeout of the tests that cut the database off mid-request: long enough that the
#: server's own lock timeout never ends the request first, even on a slow machine.
IN_FLIGHT_TIMEOUT = 8.0


@pytest.fixture(params=["postgresql", "mysql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def proxy(database_url: str) -> Iterator[Proxy]:
    url = make_url(database_url)
    proxy = Proxy(
        url.host or "127.0.0.1",
        url.port or (5432 if url.get_backend_name() == "postgresql" else 3306),
    )
    yield proxy
    proxy.close()


@pytest.fixture
def apps(database_url: str, table_name: str, proxy: Proxy) -> Iterator[Callable[..., Flask]]:
    through_proxy = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    made: list[Flask] = []

    def make(**config: Any) -> Flask:
        settings = {
            "LOCKING_DATABASE_URI": through_proxy.render_as_string(hide_password=False),
            "LOCKING_TABLE_NAME": table_name,
            "LOCKING_STORE_TIMEOUT": STORE_TIMEOUT,
            **config,
        }
        app = create_app(**settings)
        made.append(app)
        return app

    yield make
    for app in made:
        state = app.extensions["locking"]
        if state._engine is not None:  # no connection leaked by a failed request
            store = state._engine.store
            # (a connection parked idle by the store's keeper is not leaked)
            assert store.engine.pool.checkedout() == store.keeper.parked
        state.close()
    drop_tables(database_url, table_name)


def bounded(call: Callable[[], Any]) -> Any:
    """Run ``call`` and fail if it does not return within :data:`HANG_BOUND`."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as error:  # noqa: BLE001
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_BOUND)
    assert not thread.is_alive(), f"a request hung for more than {HANG_BOUND} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, (response.status_code, response.get_data(as_text=True))
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["type"] == "ServiceUnavailable"


class RowBlocker:
    """A transaction of the test's own (not through the proxy) that holds a lock row, like a
    stuck writer, so an acquire or release is in flight when the database goes away."""

    def __init__(
        self, database_url: str, table: str, resource: str, *, share: bool = False
    ) -> None:
        self.engine = sa.create_engine(database_url)
        self.conn = self.engine.connect()
        self.conn.begin()
        # share=True locks the row the way hold() does (FOR SHARE / LOCK IN SHARE MODE).
        column = sa.column("resource")
        select = sa.select(column).select_from(sa.table(table)).where(column == resource)
        self.conn.execute(select.with_for_update(read=share))

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


def wait_until_blocked(
    database_url: str, table: str, box: dict[str, Any] | None = None
) -> None:
    """Wait until a statement on ``table`` is waiting for a row lock on the server.

    ``box``: where the request in flight puts its ``response`` when it ends; a request that
    ended without waiting fails the test at once, with what it answered. When no wait is
    seen, the failure shows what the server's sessions were doing (a flake must say why).
    """
    engine = sa.create_engine(database_url)
    if engine.dialect.name == "postgresql":
        # A session waiting for a lock that holds a lock on the table (every statement on
        # it does, from its start): the store's batched statements show as EXECUTE of a
        # prepared statement, which does not name the table.
        probe = sa.text(
            "SELECT count(*) FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock'"
            " AND (a.query LIKE :q OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid"
            " AND l.granted AND l.relation = to_regclass(:table)))"
        )
        params = {"q": f"%{table}%", "table": table}
        sessions = sa.text(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 200)"
            " FROM pg_stat_activity WHERE datname = current_database()"
        )
    else:
        # Any transaction in LOCK WAIT whose statement names the table, or whose statement
        # the server does not show at that instant (seen once: the wait was missed).
        probe = sa.text(
            "SELECT count(*) FROM information_schema.innodb_trx"
            " WHERE trx_state = 'LOCK WAIT' AND (trx_query LIKE :q OR trx_query IS NULL)"
        )
        params = {"q": f"%{table}%"}
        sessions = sa.text(
            "SELECT id, command, time, state, left(info, 200) FROM information_schema.processlist"
            " WHERE db = database()"
        )
    seen: list[Any] = []
    try:
        with engine.connect() as conn:
            # A generous deadline: on a loaded machine the request can take seconds to
            # reach the server (this waits for an event, it does not time anything).
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if conn.execute(probe, params).scalar():
                    return
                conn.rollback()
                if box is not None and "response" in box:
                    response = box["response"]
                    raise AssertionError(
                        "the request ended without waiting for the row: "
                        f"{response.status_code} {response.get_data(as_text=True)[:300]}"
                    )
                # InnoDB refreshes information_schema.innodb_trx only when it was not read
                # for 100 ms: polled faster, it shows the first reading for ever (a wait
                # that began after it was missed for the whole deadline).
                time.sleep(0.02 if engine.dialect.name == "postgresql" else 0.15)
            seen = [tuple(row) for row in conn.execute(sessions)]
    finally:
        engine.dispose()
    raise AssertionError(f"the request never reached the database's lock wait; sessions: {seen}")


def in_flight(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        box["started"] = time.monotonic()
        box["value"] = call()
        box["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_lock_held_while_database_is_down(apps: Callable[..., Flask], proxy: Proxy) -> None:
    app = apps()
    fail_open = apps(LOCKING_GUARD_FAIL_OPEN=True)
    client, open_client = app.test_client(), fail_open.test_client()
    held = client.post("/docs/1/@lock", headers={"X-User": "ann"})
    assert held.status_code == 200
    token, version = held.get_json()["token"], held.get_json()["version"]
    assert open_client.get("/docs/1/@lock").status_code == 200  # its pool has connections too

    proxy.down()
    ann = {"X-User": "ann"}
    for method, path, headers in [
        ("GET", "/docs/1/@lock", ann),
        ("POST", "/docs/2/@lock", ann),
        ("POST", "/docs/1/@lock", {"X-User": "bob"}),
        ("PATCH", "/docs/1/@lock", ann),
        ("DELETE", "/docs/1/@lock", ann),
    ]:
        assert_unavailable(
            bounded(lambda p=path, m=method, h=headers: client.open(p, method=m, headers=h))
        )
    # the guard fails closed: no guarded write goes through, with or without the token
    assert_unavailable(bounded(lambda: client.patch("/docs/1", headers={"Lock-Token": token})))
    assert_unavailable(bounded(lambda: client.patch("/docs/1")))
    # unguarded methods never touch the database
    assert bounded(lambda: client.get("/docs/1")).status_code == 200
    # ... unless the host chose to fail open
    assert bounded(lambda: open_client.patch("/docs/1")).status_code == 200
    assert proxy.refused > 0

    proxy.up()
    # the pool recovers by itself, and the lock is exactly as it was
    back = bounded(lambda: client.get("/docs/1/@lock", headers=ann))
    assert back.status_code == 200
    assert (back.get_json()["token"], back.get_json()["version"]) == (token, version)
    assert client.patch("/docs/1", headers={"Lock-Token": token}).status_code == 200
    assert client.patch("/docs/1").status_code == 403
    assert client.post("/docs/1/@lock", headers={"X-User": "bob"}).status_code == 409
    assert open_client.patch("/docs/1").status_code == 403  # fail-open is for outages only


def _tombstone(database_url: str, table: str, resource: str) -> int:
    """Leave a released row on ``resource`` (so a blocker can lock it); its version."""
    store = racers.open_store(database_url, table)
    row = store.acquire(racers.make_request(resource, "zed", 60_000)).row
    assert store.release(row)
    store.dispose()
    return row.version


def test_database_goes_away_during_an_acquire(
    apps: Callable[..., Flask],
    proxy: Proxy,
    database_url: str,
    table_name: str,
) -> None:
    app = apps(LOCKING_STORE_TIMEOUT=IN_FLIGHT_TIMEOUT)
    client = app.test_client()
    assert client.get("/docs/7/@lock").status_code == 200  # table made, pool warm
    old_version = _tombstone(database_url, table_name, "/docs/7")
    blocker = RowBlocker(database_url, table_name, "/docs/7")
    try:
        thread, box = in_flight(lambda: client.post("/docs/7/@lock", headers={"X-User": "ann"}))
        wait_until_blocked(database_url, table_name)  # the upsert waits for the row
        assert thread.is_alive()
        proxy.down()
        thread.join(HANG_BOUND)
        assert not thread.is_alive(), "the acquire hung after the database went away"
    finally:
        blocker.release()
    assert_unavailable(box["value"])
    proxy.up()
    time.sleep(0.3)  # let the orphaned server session finish whatever it does
    orphan = bounded(lambda: client.get("/docs/7/@lock", headers={"X-User": "ann"})).get_json()
    print(f"\nFIGURES fault acquire-in-flight: granted_by_cut_request={orphan['locked']}")
    # The lock was granted once or not at all: the owner's next POST is either the refresh
    # of that one grant or the one new grant, so the version moved by exactly one.
    again = bounded(lambda: client.post("/docs/7/@lock", headers={"X-User": "ann"}))
    assert again.status_code == 200
    assert again.get_json()["version"] == old_version + 1
    assert client.post("/docs/7/@lock", headers={"X-User": "bob"}).status_code == 409


def test_database_goes_away_during_a_release(
    apps: Callable[..., Flask],
    proxy: Proxy,
    database_url: str,
    table_name: str,
) -> None:
    app = apps(LOCKING_STORE_TIMEOUT=IN_FLIGHT_TIMEOUT)
    client = app.test_client()
    held = client.post("/docs/8/@lock", headers={"X-User": "ann"})
    token, version = held.get_json()["token"], held.get_json()["version"]
    blocker = RowBlocker(database_url, table_name, "/docs/8")
    try:
        thread, box = in_flight(lambda: client.delete("/docs/8/@lock", headers={"X-User": "ann"}))
        wait_until_blocked(database_url, table_name)  # the conditional UPDATE waits
        assert thread.is_alive()
        proxy.down()
        thread.join(HANG_BOUND)
        assert not thread.is_alive(), "the release hung after the database went away"
    finally:
        blocker.release()
    assert_unavailable(box["value"])
    proxy.up()
    time.sleep(0.3)
    # Either the release happened or it did not; the lock is never half there.
    state = bounded(lambda: client.get("/docs/8/@lock", headers={"X-User": "ann"})).get_json()
    if state["locked"]:
        assert (state["token"], state["version"]) == (token, version)
        assert client.patch("/docs/8", headers={"Lock-Token": token}).status_code == 200
        assert client.post("/docs/8/@lock", headers={"X-User": "bob"}).status_code == 409
        outcome = "kept"
    else:
        assert client.patch("/docs/8", headers={"Lock-Token": token}).status_code == 412
        taken = client.post("/docs/8/@lock", headers={"X-User": "bob"})
        assert taken.status_code == 200 and taken.get_json()["version"] == version + 1
        outcome = "released"
    print(f"\nFIGURES fault release-in-flight: outcome={outcome}")


def test_stuck_row_lock_answers_within_the_store_timeout(
    apps: Callable[..., Flask],
    backend: str,
    database_url: str,
    table_name: str,
) -> None:
    """A transaction that never lets go of the row: the acquire gives up (503) after about
    LOCKING_STORE_TIMEOUT, not after every retry has waited its full lock timeout."""
    # MariaDB: a long client read timeout, so the server's lock-wait error (1205, retried)
    # is what ends each attempt
    app = apps(
        LOCKING_ENGINE_OPTIONS={"connect_args": {"read_timeout": 60}} if backend == "mysql" else {}
    )
    client = app.test_client()
    assert client.get("/docs/9/@lock").status_code == 200
    _tombstone(database_url, table_name, "/docs/9")
    blocker = RowBlocker(database_url, table_name, "/docs/9")
    try:
        started = time.monotonic()
        response = bounded(lambda: client.post("/docs/9/@lock", headers={"X-User": "ann"}))
        took = time.monotonic() - started
    finally:
        blocker.release()
    assert_unavailable(response)
    print(f"\nFIGURES fault stuck-row: 503 after {took:.1f}s (store timeout {STORE_TIMEOUT}s)")
    assert client.post("/docs/9/@lock", headers={"X-User": "ann"}).status_code == 200


def test_database_hangs_while_a_lock_is_held(apps: Callable[..., Flask], proxy: Proxy) -> None:
    """The server stops answering but its sockets stay open (a frozen process): no request
    waits forever — PostgreSQL has no client read timeout, the store's watchdog cuts the
    connection; PyMySQL's read timeout does it on MariaDB."""
    app = apps()
    client = app.test_client()
    held = client.post("/docs/3/@lock", headers={"X-User": "ann"})
    token = held.get_json()["token"]
    proxy.freeze()
    assert_unavailable(bounded(lambda: client.get("/docs/3/@lock", headers={"X-User": "ann"})))
    assert_unavailable(bounded(lambda: client.patch("/docs/3", headers={"Lock-Token": token})))
    proxy.up()
    back = bounded(lambda: client.get("/docs/3/@lock", headers={"X-User": "ann"}))
    assert back.status_code == 200 and back.get_json()["token"] == token
    assert client.patch("/docs/3", headers={"Lock-Token": token}).status_code == 200
