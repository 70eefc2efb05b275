"""``HeldLock.release()`` keeps the token until the server confirms, and retries a 503.

The app is real and served over a socket; the 503 is real too: the app reaches its
PostgreSQL / MariaDB through a loopback proxy that the test takes down (the store is then
unavailable), and brings back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import AppFactory
from helpers.proxy import Proxy
from sqlalchemy.engine import make_url
from test_faults import backend, proxy

httpx = pytest.importorskip("httpx")

from flask_locking.client import (  # noqa: E402 - needs httpx, skipped above without it
    HeldLock,
    LockingClient,
    LockingClientError,
)

__all__ = ["backend", "proxy"]  # PostgreSQL and MariaDB, each behind its own proxy


@pytest.fixture
def base_url(proxy: Proxy, database_url: str, make_app: AppFactory) -> Iterator[str]:
    # (proxy first: it must outlive make_app's teardown, which drops the table through it)
    from werkzeug.serving import make_server

    through_proxy = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    app = make_app(
        database_url=through_proxy.render_as_string(hide_password=False),
        LOCKING_STORE_TIMEOUT=2,
        LOCKING_RETRY_AFTER=1,
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def lock_state(base_url: str) -> Any:
    return httpx.get(f"{base_url}/docs/1/@lock", headers={"X-User": "carol"}).json()


def held_lock(base_url: str, statuses: list[int]) -> tuple[LockingClient, HeldLock]:
    """Alice's lock on /docs/1; every DELETE status she receives is appended to ``statuses``."""

    def record(response: httpx.Response) -> None:
        if response.request.method == "DELETE":
            statuses.append(response.status_code)

    client = LockingClient(
        base_url, headers={"X-User": "alice"}, event_hooks={"response": [record]}
    )
    return client, client.lock("/docs/1", auto_refresh=False).acquire()


def test_release_retries_a_503_honouring_retry_after(base_url: str, proxy: Proxy) -> None:
    statuses: list[int] = []
    client, lock = held_lock(base_url, statuses)
    proxy.down()
    # The store comes back once the client has seen a 503 (and waits Retry-After: 1 s).
    back = threading.Thread(target=lambda: (_wait_for(lambda: 503 in statuses), proxy.up()))
    back.start()
    try:
        lock.release(attempts=5)
    finally:
        back.join(30)
        proxy.up()
        client.close()
    assert statuses[0] == 503 and statuses[-1] == 200, statuses
    assert lock.token is None and not lock.held
    assert lock_state(base_url)["locked"] is False


def test_release_keeps_the_token_until_the_server_confirms(base_url: str, proxy: Proxy) -> None:
    statuses: list[int] = []
    client, lock = held_lock(base_url, statuses)
    token = lock.token
    proxy.down()
    try:
        with pytest.raises(LockingClientError) as info:
            lock.release()  # retries (Retry-After: 1), then gives up
        assert info.value.response is not None and info.value.response.status_code == 503
        assert len(statuses) > 1 and set(statuses) == {503}
        # Not confirmed: the token is kept, and the lock is still held on the server.
        assert lock.token == token and lock.held
    finally:
        proxy.up()
    assert lock_state(base_url)["locked"] is True
    lock.release()  # a retried release now really releases
    client.close()
    assert statuses[-1] == 200 and lock.token is None
    assert lock_state(base_url)["locked"] is False


def test_release_of_a_lock_that_is_gone_is_confirmed(base_url: str) -> None:
    statuses: list[int] = []
    client, lock = held_lock(base_url, statuses)
    # someone with the right to steal takes it over: our release finds it gone (409)
    stolen = httpx.request(
        "DELETE", f"{base_url}/docs/1/@lock", headers={"X-User": "bob"}, json={"force": True}
    )
    assert stolen.status_code == 200
    httpx.post(f"{base_url}/docs/1/@lock", headers={"X-User": "bob"})
    lock.release()
    client.close()
    assert statuses == [409] and lock.token is None and lock.lost_reason is not None
    assert lock_state(base_url)["creator"] == "bob"  # bob's lock untouched


def _wait_for(condition: Any) -> None:
    event = threading.Event()
    for _ in range(300):
        if condition():
            return
        event.wait(0.05)
