"""Faults in the core that only a boundary or a race shows, through the guard (HTTP) and
the Python API, on every backend: the root lock, the key-length cap, timeouts at their
limits, how tokens are keyed and compared, and grants that end between a read and a write.
"""

from __future__ import annotations

import hmac
import logging
import string
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import drop_tables
from flask import Flask

from flask_locking import InvalidResource, InvalidTimeout, LockConflict, Locking, LockNotHeld, Owner
from flask_locking.resources import MAX_RESOURCE_LENGTH
from flask_locking.tokens import derive_token

MAX_TIMEOUT = 86400  # LOCKING_MAX_TIMEOUT's default


@pytest.fixture
def app(make_app: Any, database_url: str) -> Flask:
    return make_app(database_url=database_url)


@pytest.fixture
def locking(app: Flask) -> Iterator[Any]:
    with app.app_context():
        yield app.extensions["locking"].extension


def doc_path(length: int) -> str:
    """A routed document path exactly ``length`` characters long."""
    path = "/docs/" + "x" * (length - len("/docs/"))
    assert len(path) == length
    return path


# -- the root lock ---------------------------------------------------------------------


def test_root_infinite_lock_guards_every_path(app: Flask, locking: Any) -> None:
    held = locking.acquire("/", "alice", depth="infinity")
    client = app.test_client()
    for path in ("/docs/1", "/docs/1/parts/a"):
        assert client.patch(path).status_code == 403, path
        assert client.patch(path, headers={"Lock-Token": held.token}).status_code == 200, path
    assert client.patch("/docs/1/parts/a", headers={"Lock-Token": "x" * 43}).status_code == 412
    covering = locking.engine.get("/docs/1/parts/a", covering=True)
    assert covering is not None and covering.resource == "/"
    with pytest.raises(LockConflict) as info:
        locking.acquire("/docs/1/parts/a", "bob")
    assert info.value.lock.resource == "/"
    locking.release("/", token=held.token)
    assert client.patch("/docs/1/parts/a").status_code == 200
    assert locking.acquire("/docs/1/parts/a", "bob").version == 1


# -- the key-length cap ----------------------------------------------------------------


@pytest.mark.parametrize("length", [MAX_RESOURCE_LENGTH - 1, MAX_RESOURCE_LENGTH])
def test_longest_keys_are_lockable_and_guarded(app: Flask, locking: Any, length: int) -> None:
    client = app.test_client()
    wire = doc_path(length)
    response = client.post(f"{wire}/@lock", headers={"X-User": "alice"})
    assert response.status_code == 200, response.get_data(as_text=True)
    token = response.get_json()["token"]
    assert client.patch(wire).status_code == 403
    assert client.patch(wire, headers={"Lock-Token": token}).status_code == 200
    api = doc_path(length)[:-1] + "y"
    held = locking.acquire(api, "alice")
    assert held.resource == api and locking.get(api).version == held.version
    assert client.patch(api).status_code == 403
    assert client.patch(api, headers={"Lock-Token": held.token}).status_code == 200


def test_one_character_more_cannot_be_locked(app: Flask, locking: Any) -> None:
    client = app.test_client()
    path = doc_path(MAX_RESOURCE_LENGTH + 1)
    response = client.post(f"{path}/@lock", headers={"X-User": "alice"})
    assert response.status_code == 400
    assert set(response.get_json()) == {"error"}
    with pytest.raises(InvalidResource):
        locking.acquire(path, "alice")
    assert client.patch(path).status_code == 200  # nothing can lock it, so nothing refuses


# -- timeouts at their limits ----------------------------------------------------------


@pytest.mark.parametrize("seconds", [1, MAX_TIMEOUT])
def test_wire_timeout_limits_are_accepted(app: Flask, seconds: int) -> None:
    response = app.test_client().post("/docs/1/@lock", json={"timeout": seconds})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["timeout"] == seconds


@pytest.mark.parametrize("seconds", [0, MAX_TIMEOUT + 1])
def test_wire_timeout_beyond_the_limits_is_400(app: Flask, seconds: int) -> None:
    response = app.test_client().post("/docs/1/@lock", json={"timeout": seconds})
    assert response.status_code == 400
    assert "timeout" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("seconds", [0.001, 1.005, MAX_TIMEOUT])
def test_python_timeout_limits_are_kept_to_the_millisecond(locking: Any, seconds: float) -> None:
    lock = locking.acquire("/docs/1", "alice", timeout=seconds)
    assert lock.timeout == seconds
    other = locking.acquire("/docs/2", "alice", timeout=60)
    assert locking.refresh("/docs/2", other.token, timeout=seconds).timeout == seconds


@pytest.mark.parametrize("seconds", [0.0009, MAX_TIMEOUT + 0.001])
def test_python_timeout_beyond_the_limits_is_refused(locking: Any, seconds: float) -> None:
    with pytest.raises(InvalidTimeout):
        locking.acquire("/docs/1", "alice", timeout=seconds)


@pytest.mark.parametrize(("length", "kept"), [(1024, True), (1025, False)])
def test_owner_url_cap(locking: Any, length: int, kept: bool) -> None:
    url = "https://example.org/" + "u" * (length - len("https://example.org/"))
    lock = locking.acquire("/docs/1", Owner(id="alice", name="Alice", url=url))
    assert lock.owner == Owner(id="alice", name="Alice", url=url if kept else None)
    assert locking.get("/docs/1").owner == lock.owner


# -- tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{}, {"LOCKING_SECRET_KEY": "raw-secret"}])
def test_tokens_are_never_keyed_with_the_raw_secret(
    make_app: Any,
    database_url: str,
    config: dict[str, str],
) -> None:
    """Tokens are keyed with a key derived from the configured secret: someone who knows
    SECRET_KEY (it signs the session cookies) and reads the table still cannot compute a
    token."""
    app = make_app(database_url=database_url, **config)
    raw = (config.get("LOCKING_SECRET_KEY") or app.config["SECRET_KEY"]).encode()
    with app.app_context():
        engine = app.extensions["locking"].engine
        lock = app.extensions["locking"].extension.acquire("/docs/1", "alice")
        row = engine.store.live("/docs/1")
    forged = derive_token(raw, row.resource, row.version, row.secret)
    assert forged != lock.token
    client = app.test_client()
    assert client.patch("/docs/1", headers={"Lock-Token": forged}).status_code == 412
    assert client.patch("/docs/1", headers={"Lock-Token": lock.token}).status_code == 200


def test_tokens_carry_a_full_sha256_hmac(locking: Any) -> None:
    """256 bits, URL- and header-safe base64 without padding: 43 characters."""
    token = locking.acquire("/docs/1", "alice").token
    assert len(token) == 43
    assert set(token) <= set(string.ascii_letters + string.digits + "-_")


@pytest.fixture
def keyless_app(database_url: str, table_name: str, tmp_path: Any) -> Iterator[Callable[[], Flask]]:
    """Apps on one lock store with an empty SECRET_KEY (``make_app`` always sets one)."""
    created: list[Flask] = []

    def factory() -> Flask:
        app = Flask(__name__, instance_path=str(tmp_path / f"keyless{len(created)}"))
        app.config.update(
            SECRET_KEY="", LOCKING_DATABASE_URI=database_url, LOCKING_TABLE_NAME=table_name
        )

        @app.route("/docs/<doc_id>", methods=["PATCH"])
        def document(doc_id: str) -> str:
            return doc_id

        Locking(app)
        created.append(app)
        return app

    yield factory
    for app in created:
        app.extensions["locking"].close()
    if not database_url.startswith("sqlite"):
        drop_tables(database_url, table_name)


def test_without_a_secret_key_processes_share_a_generated_key(
    keyless_app: Callable[[], Flask],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No key configured (an empty SECRET_KEY is none): the app warns, and the generated
    key lives in the store, so a token from one process opens the lock in another."""
    first, second = keyless_app(), keyless_app()
    with caplog.at_level(logging.WARNING, logger="flask_locking"), first.app_context():
        lock = first.extensions["locking"].extension.acquire("/docs/1", "alice")
    assert "Neither LOCKING_SECRET_KEY nor SECRET_KEY is set" in caplog.text
    client = second.test_client()
    assert client.patch("/docs/1").status_code == 403
    assert client.patch("/docs/1", headers={"Lock-Token": lock.token}).status_code == 200


def test_tokens_are_compared_in_constant_time(
    app: Flask,
    locking: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every token check goes through hmac.compare_digest (a spy records each call)."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    held = locking.acquire("/docs/1", "alice")
    monkeypatch.setattr(hmac, "compare_digest", spy)
    client = app.test_client()
    wrong = "y" * len(held.token)
    assert client.patch("/docs/1", headers={"Lock-Token": wrong}).status_code == 412
    assert client.patch("/docs/1", headers={"Lock-Token": held.token}).status_code == 200
    assert locking.refresh("/docs/1", held.token).token == held.token
    presented = [a for a, _ in compared]
    assert presented.count(wrong.encode()) == 1
    assert presented.count(held.token.encode()) >= 2
    assert all(b == held.token.encode() for _, b in compared)


# -- grants that end between the engine's read and its write ---------------------------


class Interfering:
    """The app's store, with something another process does slipped in once, right
    before a given store call (the race made deterministic; the store itself is real)."""

    def __init__(self, store: Any, method: str, interference: Callable[[], None]) -> None:
        self._store = store
        self._pending = {method: interference}

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        interference = self._pending.pop(name, None)
        if interference is None:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            interference()
            return real(*args, **kwargs)

        return call


def interfere(app: Flask, method: str, interference: Callable[[], None]) -> None:
    engine = app.extensions["locking"].engine
    engine.store = Interfering(engine.store, method, interference)


def test_release_retries_when_the_grant_changed_under_it(app: Flask, locking: Any) -> None:
    """Between the engine's read and its conditional release, alice's grant ended (another
    tab) and she locked again: the release re-reads and ends the new grant."""
    first = locking.acquire("/docs/1", "alice")

    def another_tab() -> None:
        assert locking.release("/docs/1", token=first.token) is not None
        assert locking.acquire("/docs/1", "alice").version == first.version + 1

    interfere(app, "release", another_tab)
    ended = locking.release("/docs/1", owner="alice")
    assert ended is not None and ended.version == first.version + 1
    assert locking.get("/docs/1") is None
    assert app.test_client().patch("/docs/1").status_code == 200


def test_refresh_of_a_grant_that_ended_under_it_is_not_held(app: Flask, locking: Any) -> None:
    held = locking.acquire("/docs/1", "alice", timeout=60)

    def stolen() -> None:
        assert locking.release("/docs/1", owner="bob", force=True) is not None
        locking.acquire("/docs/1", "bob")

    interfere(app, "refresh", stolen)
    with pytest.raises(LockNotHeld):
        locking.refresh("/docs/1", held.token, timeout=120)
    now = locking.get("/docs/1")
    assert now.owner.id == "bob" and now.version == held.version + 1 and now.timeout == 600


# -- which requests the guard leaves alone ---------------------------------------------


def test_job_lock_endpoints_pass_the_guard_even_when_post_and_delete_are_guarded(
    make_app: Any,
) -> None:
    """The lock endpoints lie below the job they lock (an infinite-depth lock): guarding
    POST and DELETE must not refuse the holder refreshing or unlocking it there."""
    app = make_app(LOCKING_GUARDED_METHODS={"POST", "PATCH", "DELETE"})

    @app.route("/api/v1.0/companies/<int:company>/jobs/<int:job>", methods=["PATCH"])
    def job(company: int, job: int) -> str:
        return "saved"

    client = app.test_client()
    alice = {"X-User": "alice"}
    lock_url = "/api/v1.0/companies/1/jobs/2/lock/"
    assert client.post(lock_url, headers=alice).status_code == 201
    assert client.patch("/api/v1.0/companies/1/jobs/2").status_code == 423  # the job dialect's
    assert client.post(lock_url, headers=alice).status_code == 200
    assert client.delete(lock_url, headers=alice).status_code == 204
    assert client.patch("/api/v1.0/companies/1/jobs/2").status_code == 200


def test_lock_endpoint_is_served_when_a_host_route_matches_it_first(make_app: Any) -> None:
    app = make_app()

    @app.route("/docs/<path:rest>", methods=["POST", "PATCH"])
    def host(rest: str) -> str:
        return "the host's view"

    client = app.test_client()
    response = client.post("/docs/1/x/@lock", headers={"X-User": "alice"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["resource"] == "/docs/1/x"
    assert client.patch("/docs/1/x").status_code == 403
