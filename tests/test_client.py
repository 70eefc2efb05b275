"""The httpx client against the real app: in-process (WSGITransport) and over a socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from tests.conftest import AppFactory

httpx = pytest.importorskip("httpx")

from flask_locking.client import (  # noqa: E402 - needs httpx, skipped above without it
    LockConflictError,
    LockingClient,
    LockLost,
)

ClientFactory = Callable[[str], LockingClient]


def wsgi_clients(app: Flask) -> Iterator[ClientFactory]:
    made: list[LockingClient] = []

    def make(user: str) -> LockingClient:
        client = LockingClient(
            "http://testserver",
            transport=httpx.WSGITransport(app=app),
            headers={"X-User": user},
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def socket_clients(app: Flask) -> Iterator[ClientFactory]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    made: list[LockingClient] = []

    def make(user: str) -> LockingClient:
        client = LockingClient(f"http://127.0.0.1:{server.port}", headers={"X-User": user})
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture(params=["wsgi", "socket"])
def clients(request: pytest.FixtureRequest, make_app: AppFactory) -> Iterator[ClientFactory]:
    app = make_app()
    factory = wsgi_clients if request.param == "wsgi" else socket_clients
    yield from factory(app)


def state(client: LockingClient, url: str = "/docs/1") -> Any:
    return client.http.get(f"{url}/@lock").json()


def test_lock_write_release(clients: ClientFactory) -> None:
    alice, bob = clients("alice"), clients("bob")
    with alice.lock("/docs/1", timeout=60) as lock:
        assert lock.held and lock.token and lock.version == 1
        holder = state(bob)
        assert holder["creator"] == "alice" and "token" not in holder
        # bob cannot write; alice's writes carry the token and pass the guard
        assert bob.http.patch("/docs/1", json={}).status_code == 403
        response = lock.patch(json={"title": "new"})
        assert response.status_code == 200
        assert response.json()["version"] == lock.version  # the guard verified the token
        assert lock.get().status_code == 200
    assert not lock.held
    assert state(bob) == {"locked": False, "stealable": True}
    assert bob.http.patch("/docs/1", json={}).status_code == 200


def test_conflict_carries_the_holder(clients: ClientFactory) -> None:
    alice, bob = clients("alice"), clients("bob")
    with alice.lock("/docs/1"), pytest.raises(LockConflictError) as caught:
        bob.lock("/docs/1").acquire()
    assert caught.value.holder is not None and caught.value.holder["creator"] == "alice"
    assert caught.value.response is not None and caught.value.response.status_code == 409


def test_released_when_the_block_raises(clients: ClientFactory) -> None:
    alice = clients("alice")
    with pytest.raises(RuntimeError), alice.lock("/docs/1"):
        raise RuntimeError("boom")
    assert state(alice)["locked"] is False


def test_background_refresh_keeps_a_short_lock(clients: ClientFactory) -> None:
    alice, bob = clients("alice"), clients("bob")
    with alice.lock("/docs/1", timeout=2) as lock:
        first = lock.info["time"]
        time.sleep(4.5)  # more than twice the timeout: only refreshes keep it alive
        assert lock.held
        assert state(bob)["creator"] == "alice"
        assert lock.info["time"] > first
        assert lock.patch(json={}).status_code == 200


def test_without_refresh_the_lock_expires_and_the_write_raises(clients: ClientFactory) -> None:
    alice, bob = clients("alice"), clients("bob")
    lock = alice.lock("/docs/1", timeout=1, auto_refresh=False).acquire()
    time.sleep(1.2)
    with pytest.raises(LockLost):
        lock.patch(json={})
    assert bob.http.post("/docs/1/@lock").status_code == 200
    lock.release()  # nothing to do: not ours any more
    assert state(bob)["creator"] == "bob"


def test_stolen_lock_raises_at_the_next_write(clients: ClientFactory) -> None:
    alice, bob = clients("alice"), clients("bob")
    with alice.lock("/docs/1", timeout=60, auto_refresh=False) as lock:
        assert bob.http.request("DELETE", "/docs/1/@lock", json={"force": True}).status_code == 200
        bob.http.post("/docs/1/@lock")
        with pytest.raises(LockLost) as caught:
            lock.patch(json={"title": "stale"})  # refused by the server as stale (412)
        assert caught.value.response is not None and caught.value.response.status_code == 412
        with pytest.raises(LockLost):
            lock.patch(json={})  # now refused before sending
        assert lock.get().status_code == 200  # reads still work
    assert state(bob)["creator"] == "bob"  # leaving the block did not release bob's lock


def test_refresh_thread_notices_a_steal(clients: ClientFactory) -> None:
    alice, bob = clients("alice"), clients("bob")
    with alice.lock("/docs/1", refresh_interval=0.05) as lock:
        bob.http.request("DELETE", "/docs/1/@lock", json={"force": True})
        deadline = time.monotonic() + 10
        while lock.lost_reason is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.lost_reason is not None and not lock.held
        with pytest.raises(LockLost):
            lock.patch(json={})


def test_job_locks_refresh_by_locking_again(make_app: AppFactory) -> None:
    app = make_app()
    transport = httpx.WSGITransport(app=app)
    alice = LockingClient("http://testserver", transport=transport, headers={"X-User": "alice"})
    bob = LockingClient("http://testserver", transport=transport, headers={"X-User": "bob"})
    job = "/api/v1.0/companies/1/jobs/2"
    with alice.lock(job, lock_url=f"{job}/lock/", refresh_method="POST", timeout=2) as lock:
        assert lock.info["resource"] == job
        time.sleep(3)  # longer than the timeout: the re-locks kept it
        assert lock.held and lock.version == 1
        assert bob.http.post(f"{job}/lock/").status_code == 409
    assert bob.http.post(f"{job}/lock/").status_code == 201
    alice.close()
    bob.close()


def test_reference_guard_409_is_a_lost_lock(make_app: AppFactory) -> None:
    """The reference dialect's guard refuses a stale token with its 409 envelope; the client
    reads that as a lost lock, like a 412 elsewhere."""
    app = make_app()
    url = "/api/v2/clients/1/reference"

    @app.route(url, methods=["PATCH"])
    def reference() -> Any:
        return {"saved": True}

    transport = httpx.WSGITransport(app=app)
    alice = LockingClient("http://testserver", transport=transport, headers={"X-User": "alice"})
    with alice.lock(url, lock_url=f"{url}/lock", refresh_method="POST", auto_refresh=False) as lock:
        assert lock.patch(json={}).status_code == 200
        with app.app_context():  # taken over: released by force, then locked by bob
            locking = app.extensions["locking"].extension
            locking.release(url, owner="bob", force=True)
            locking.acquire(url, "bob", depth="infinity")
        with pytest.raises(LockLost) as caught:
            lock.patch(json={})
        assert caught.value.response is not None and caught.value.response.status_code == 409
    alice.close()


def test_a_host_409_with_the_reference_envelope_is_not_a_lost_lock(make_app: AppFactory) -> None:
    """Only the guard's ``Lock-Refused: stale`` makes a lost lock: a host view answering
    409 with the same envelope (its own conflict) leaves the lock held."""
    app = make_app()
    url = "/api/v2/clients/1/reference"

    @app.route(url, methods=["PATCH"])
    def reference() -> Any:
        envelope = {
            "status": "error",
            "code": 409,
            "message": "Conflict",
            "details": "Locking conflict",
        }
        return envelope, 409

    transport = httpx.WSGITransport(app=app)
    alice = LockingClient("http://testserver", transport=transport, headers={"X-User": "alice"})
    with alice.lock(url, lock_url=f"{url}/lock", refresh_method="POST", auto_refresh=False) as lock:
        response = lock.patch(json={})
        assert response.status_code == 409 and "Lock-Refused" not in response.headers
        assert lock.held and lock.lost_reason is None
    alice.close()
